"""The interactive API documentation: Swagger UI at ``/docs`` and ReDoc at ``/redoc``.

Their scripts, styles and icon come from the installed ``fastapi-offline`` package and
are served under ``/docs/assets/``, so the pages work without Internet access and their
content security policy allows this server only (plus each page's inline start-up
script, by hash).
"""

from __future__ import annotations

import functools
import re
from importlib import metadata, resources

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response

from modelhost.errors import NotFoundError
from modelhost.serving.http import DOCS_ASSETS, docs_policy

ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
"""The files served under ``/docs/assets/``, with their media types."""

SWAGGER_UI = "/docs"
REDOC = "/redoc"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
_PACKAGE = "fastapi_offline"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# The URLs carry the package version, so a browser may keep the files for a day and
# still fetches new ones after an upgrade.
_ASSET_CACHE = "public, max-age=86400"


def install(api: FastAPI) -> None:
    """Serve the documentation pages and their assets on ``api`` (created with
    ``docs_url=None, redoc_url=None``)."""
    version = metadata.version("fastapi-offline")
    openapi_url = api.openapi_url or "/openapi.json"
    title = f"{api.title} - API documentation"

    def asset(name: str) -> str:
        return f"{DOCS_ASSETS}{name}?v={version}"

    pages = {
        SWAGGER_UI: get_swagger_ui_html(
            openapi_url=openapi_url, title=title,
            swagger_js_url=asset("swagger-ui-bundle.js"),
            swagger_css_url=asset("swagger-ui.css"),
            swagger_favicon_url=asset("favicon.png"),
            oauth2_redirect_url=OAUTH2_REDIRECT,
            # No badge from the public validator service: nothing leaves this server.
            swagger_ui_parameters={"validatorUrl": None}),
        REDOC: get_redoc_html(openapi_url=openapi_url, title=title,
                              redoc_js_url=asset("redoc.standalone.js"),
                              redoc_favicon_url=asset("favicon.png"), with_google_fonts=False),
        OAUTH2_REDIRECT: get_swagger_ui_oauth2_redirect_html(),
    }
    html = {path: bytes(page.body) for path, page in pages.items()}
    name, value = docs_policy(script for body in html.values()
                              for script in _INLINE_SCRIPT.findall(body.decode()))
    headers = {name.decode(): value.decode()}

    @api.get(SWAGGER_UI, include_in_schema=False)
    async def swagger_ui() -> Response:
        return HTMLResponse(html[SWAGGER_UI], headers=headers)

    @api.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def oauth2_redirect() -> Response:
        return HTMLResponse(html[OAUTH2_REDIRECT], headers=headers)

    @api.get(REDOC, include_in_schema=False)
    async def redoc() -> Response:
        return HTMLResponse(html[REDOC], headers=headers)

    @api.get(DOCS_ASSETS + "{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFoundError(f"no documentation asset {name!r}; the assets are: "
                                f"{', '.join(ASSETS)}")
        return Response(_read(name), media_type=media_type,
                        headers={"cache-control": _ASSET_CACHE})


@functools.cache
def _read(name: str) -> bytes:
    """One asset's bytes, read from the package on first use."""
    return (resources.files(_PACKAGE) / "static" / name).read_bytes()
