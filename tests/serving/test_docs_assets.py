"""/docs and /redoc work offline: every script, style and icon they use is served by the
server itself, and their content security policy allows nothing else. `GET /` sends a
browser to /docs."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

import pytest
from tests.serving.conftest import serve

from modelhost import Client

pytestmark = pytest.mark.anyio

PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")
_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def referenced(html: str) -> list[str]:
    return [a or b for a, b in _URL.findall(html)]


def script_hash(script: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


async def test_pages_reference_only_this_server(iris_client: Client) -> None:
    async with serve(iris_client) as (_, http):
        for path in PAGES:
            page = await http.get(path)
            assert page.status_code == 200, (path, page.text)
            assert page.headers["content-type"].startswith("text/html")
            assert "//" not in "".join(referenced(page.text)), (path, referenced(page.text))
            assert "cdn" not in page.text.lower() and "googleapis" not in page.text
            policy = page.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy
            assert "http" not in policy and "*" not in policy
            assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
            # Each inline start-up script runs (allowed by its hash), and nothing else does.
            for script in _INLINE_SCRIPT.findall(page.text):
                assert script_hash(script) in policy, path
            assert script_hash("alert(1)") not in policy
        swagger = (await http.get("/docs")).text
        assert any(u.startswith("/docs/assets/swagger-ui-bundle.js") for u in referenced(swagger))
        assert "url: '/openapi.json'" in swagger
        redoc = (await http.get("/redoc")).text
        assert any(u.startswith("/docs/assets/redoc.standalone.js") for u in referenced(redoc))
        assert 'spec-url="/openapi.json"' in redoc


async def test_every_asset_the_pages_use_is_served(iris_client: Client) -> None:
    package = resources.files("fastapi_offline") / "static"
    async with serve(iris_client) as (_, http):
        urls = {url for path in PAGES for url in referenced((await http.get(path)).text)
                if url.startswith("/docs/assets/")}
        assert len(urls) == 4, urls  # Swagger UI's script and style, ReDoc's script, icon
        for url in sorted(urls):
            response = await http.get(url)
            assert response.status_code == 200, (url, response.text)
            name = url.split("?")[0].rsplit("/", 1)[1]
            suffix = name[name.rindex("."):]
            assert response.headers["content-type"].split(";")[0] == MEDIA_TYPES[suffix], url
            assert response.content == (package / name).read_bytes()
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["cache-control"] == "public, max-age=86400"
        bundle = await http.get("/docs/assets/swagger-ui-bundle.js")
        assert b"SwaggerUIBundle" in bundle.content
        missing = await http.get("/docs/assets/index.html")
        assert missing.status_code == 404
        assert "swagger-ui-bundle.js" in missing.json()["error"]["message"]
        assert (await http.get("/docs/assets/..%2F..%2Fpyproject.toml")).status_code == 404


async def test_the_root_sends_a_browser_to_the_docs(iris_client: Client) -> None:
    async with serve(iris_client) as (_, http):
        response = await http.get("/")
        assert response.status_code == 307
        assert response.headers["location"] == "/docs"
        landed = await http.get("/", follow_redirects=True)
        assert landed.status_code == 200 and str(landed.url) == "http://test/docs"
        assert "<div id=\"swagger-ui\">" in landed.text


async def test_with_keys_the_docs_need_what_docs_need(iris_client: Client) -> None:
    viewer = iris_client.keys.create(name="viewer", role="viewer").secret
    predictor = iris_client.keys.create(name="predictor", role="predictor").secret
    paths = ("/", "/docs", "/redoc", "/docs/assets/swagger-ui.css",
             "/docs/assets/redoc.standalone.js")
    async with serve(iris_client, auth=True) as (_, http):
        for path in paths:
            refused = await http.get(path)
            assert refused.status_code == 401, (path, refused.text)
            assert refused.json()["error"]["code"] == "unauthorized"
            forbidden = await http.get(path, headers={"X-API-Key": predictor})
            assert forbidden.status_code == 403, (path, forbidden.text)
            allowed = await http.get(path, headers={"Authorization": f"Bearer {viewer}"})
            assert allowed.status_code == (307 if path == "/" else 200), (path, allowed.text)
        home = await http.get("/", headers={"Authorization": f"Bearer {viewer}"})
        assert home.headers["location"] == "/docs"
