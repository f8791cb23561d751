"""The guard in front of every route: keys, roles, rate limits, audit of denials."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from modelhost import Client
from modelhost.security import Permission
from modelhost.serving.routes import Routes
from tests.serving.conftest import serve

pytestmark = pytest.mark.anyio

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
V2_BODY = {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
                      for n, v in ROW.items()]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def keys(iris_client: Client) -> dict[str, str]:
    made = {role: iris_client.keys.create(name=role, role=role).secret
            for role in ("admin", "deployer", "predictor", "viewer")}
    made["other-model"] = iris_client.keys.create(name="om", role="predictor",
                                                  models=["wine"]).secret
    made["iris-only"] = iris_client.keys.create(name="io", role="predictor",
                                                models=["iris"]).secret
    made["slow"] = iris_client.keys.create(name="slow", role="predictor",
                                           rate_limit=0.5).secret
    return made


@asynccontextmanager
async def secured(client: Client, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(client, auth=True, **options) as (_, http):
        yield http


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/models/iris/predict", {"inputs": [ROW]}),
    ("POST", "/v1/models/iris/versions/1.0.0/predict", {"inputs": [ROW]}),
    ("POST", "/v2/models/iris/infer", V2_BODY),
    ("POST", "/v1/models/iris/invocations", {"dataframe_records": [ROW]}),
    ("GET", "/v2/models/iris", None),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/iris/versions/1.0.0/card", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("GET", "/no/such/route", None),
    ("POST", "/v1/models/iris/versions/1.0.1/stage", {"stage": "staging"}),
    ("PUT", "/v1/models/iris/aliases/champion", {"version": "1.0.0"}),
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {"name": "x", "role": "admin"}),
    ("GET", "/v1/audit", None),
]

# role -> routes (by index in ROUTES) it may use; every other one answers 403.
ALLOWED = {
    "admin": set(range(len(ROUTES))),
    "deployer": {4, 5, 6, 7, 8, 9, 10, 11, 12},
    "predictor": {0, 1, 2, 3, 4},
    "viewer": {4, 5, 6, 7, 8, 9, 10},
}


async def test_every_route_needs_a_key(iris_client: Client, keys: dict[str, str]) -> None:
    async with secured(iris_client) as http:
        for method, path, body in ROUTES:
            for headers in ({}, bearer("mh_0123456789ab_" + "x" * 43),
                            bearer(keys["admin"][:-1] + "!"), {"X-API-Key": "nope"}):
                response = await http.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                document = response.json()
                if path.startswith("/v2/"):  # the Open Inference Protocol's shape
                    assert isinstance(document["error"], str)
                elif path.endswith("/invocations"):  # MLflow's shape
                    assert document["error_code"] == "UNAUTHORIZED"
                else:
                    assert document["error"]["code"] == "unauthorized"
        for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/v2"):
            assert (await http.get(path)).status_code == 200, path


@pytest.mark.parametrize("role", sorted(ALLOWED))
async def test_roles(iris_client: Client, keys: dict[str, str], role: str) -> None:
    async with secured(iris_client) as http:
        for index, (method, path, body) in enumerate(ROUTES):
            response = await http.request(method, path, json=body, headers=bearer(keys[role]))
            if index in ALLOWED[role]:
                assert response.status_code not in (401, 403), (role, path, response.text)
            else:
                assert response.status_code == 403, (role, path, response.text)


async def test_predictors_limited_to_models(iris_client: Client, keys: dict[str, str]) -> None:
    async with secured(iris_client) as http:
        body = {"inputs": [ROW]}
        ok = await http.post("/v1/models/iris/predict", json=body,
                             headers=bearer(keys["iris-only"]))
        assert ok.status_code == 200
        refused = await http.post("/v1/models/iris/predict", json=body,
                                  headers=bearer(keys["other-model"]))
        assert refused.status_code == 403
        assert "model 'iris'" in refused.json()["error"]["message"]


async def test_denied_privileged_attempts_are_audited(iris_client: Client,
                                                      keys: dict[str, str]) -> None:
    async with secured(iris_client) as http:
        before = iris_client.audit.verify().entries
        await http.post("/v1/models/iris/versions/1.0.1/stage", json={"stage": "staging"},
                        headers={**bearer(keys["predictor"]), "X-Request-Id": "probe-1"})
        await http.post("/v1/keys", json={"name": "x", "role": "admin"})
        await http.post("/v1/models/iris/predict", json={"inputs": [ROW]},
                        headers=bearer(keys["viewer"]))  # not privileged: not audited
        denied = iris_client.audit.list(action="access.denied")
        assert len(denied) == 2 and iris_client.audit.verify().entries == before + 2
        newest, oldest = denied
        assert oldest.actor == "key:" + keys["predictor"][3:15] + " (predictor)"
        assert oldest.request_id == "probe-1"
        assert oldest.target == "POST /v1/models/iris/versions/1.0.1/stage"
        assert newest.actor == "anonymous" and newest.after == {
            "needed": ["admin"], "reason": "no valid key"}
        assert iris_client.registry.get_version("iris", "1.0.1").stage.value == "none"


async def test_changes_through_the_api_name_the_key_and_request(
        iris_client: Client, keys: dict[str, str]) -> None:
    async with secured(iris_client) as http:
        response = await http.post("/v1/models/iris/versions/1.0.1/stage",
                                   json={"stage": "staging"}, headers=bearer(keys["deployer"]))
        assert response.status_code == 200
        entry = iris_client.audit.list(limit=1)[0]
        assert entry.action == "model.stage" and entry.target == "iris:1.0.1"
        assert entry.actor.endswith("(deployer)")
        assert entry.request_id is not None and len(entry.request_id) == 32


async def test_admins_manage_keys_over_http(iris_client: Client, keys: dict[str, str]) -> None:
    async with secured(iris_client) as http:
        admin = bearer(keys["admin"])
        created = await http.post("/v1/keys", json={"name": "new", "role": "viewer"},
                                  headers=admin)
        assert created.status_code == 201
        secret, key_id = created.json()["key"], created.json()["id"]
        assert (await http.get("/v1/models", headers=bearer(secret))).status_code == 200
        listed = (await http.get("/v1/keys", headers=admin)).json()
        assert key_id in {k["id"] for k in listed} and all("key" not in k for k in listed)
        assert (await http.delete(f"/v1/keys/{key_id}", headers=admin)).status_code == 204
        assert (await http.get("/v1/models", headers=bearer(secret))).status_code == 401
        bad = await http.post("/v1/keys", json={"name": "x", "role": "root"}, headers=admin)
        assert bad.status_code == 422 and "unknown role" in bad.json()["error"]["message"]
        verify = (await http.get("/v1/audit/verify", headers=admin)).json()
        assert verify["ok"] is True


async def test_rate_limit_answers_429_with_retry_after(iris_client: Client,
                                                       keys: dict[str, str]) -> None:
    async with secured(iris_client) as http:
        body = {"inputs": [ROW]}
        first = await http.post("/v1/models/iris/predict", json=body,
                                headers=bearer(keys["slow"]))
        second = await http.post("/v1/models/iris/predict", json=body,
                                 headers=bearer(keys["slow"]))
        assert first.status_code == 200
        assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
        assert second.json()["error"]["code"] == "rate_limited"
        # Other keys have their own buckets.
        other = await http.post("/v1/models/iris/predict", json=body,
                                headers=bearer(keys["predictor"]))
        assert other.status_code == 200


async def test_default_rate_limit_applies_to_keys_without_their_own(
        iris_client: Client, keys: dict[str, str]) -> None:
    async with secured(iris_client, rate_limit=0.5) as http:
        statuses = [(await http.get("/v1/models", headers=bearer(keys["viewer"]))).status_code
                    for _ in range(2)]
        assert statuses == [200, 429]


async def test_keys_in_the_query_string_are_not_accepted(iris_client: Client,
                                                         keys: dict[str, str]) -> None:
    async with secured(iris_client) as http:
        for name in ("api_key", "key", "token", "access_token"):
            response = await http.get(f"/v1/models?{name}={keys['admin']}")
            assert response.status_code == 401


async def test_security_headers_and_no_cors_by_default(iris_client: Client,
                                                       keys: dict[str, str]) -> None:
    async with secured(iris_client) as http:
        for response in (
                await http.post("/v1/models/iris/predict", json={"inputs": [ROW]},
                                headers=bearer(keys["admin"])),
                await http.get("/v1/models", headers=bearer(keys["admin"])),
                await http.get("/v1/models")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert "default-src 'none'" in response.headers["content-security-policy"]
            assert "access-control-allow-origin" not in response.headers
        docs = await http.get("/docs", headers=bearer(keys["viewer"]))
        # The documentation page has its own policy: scripts from this server only.
        assert docs.status_code == 200
        assert "script-src 'self'" in docs.headers["content-security-policy"]
        preflight = await http.options("/v1/models/iris/predict", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers


async def test_cors_when_configured(iris_client: Client, keys: dict[str, str]) -> None:
    async with secured(iris_client, cors_origins=("https://app.example",)) as http:
        preflight = await http.options("/v1/models/iris/predict", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        response = await http.post("/v1/models/iris/predict", json={"inputs": [ROW]},
                                   headers={**bearer(keys["predictor"]),
                                            "Origin": "https://app.example"})
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        other = await http.options("/v1/models/iris/predict", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/healthz", None),
    ("GET", "/metrics", {Permission.METRICS}),
    ("POST", "/invocations", {Permission.PREDICT}),
    ("POST", "/v2/models/x/versions/1.0.0/infer", {Permission.PREDICT}),
    ("GET", "/v2/models/x/ready", {Permission.PREDICT, Permission.READ}),
    ("DELETE", "/v1/models/x/aliases/a", {Permission.DEPLOY}),
    ("GET", "/v1/keys/abc", {Permission.ADMIN}),
    ("GET", "/v1/audit/verify", {Permission.ADMIN}),
    ("POST", "/v1/models/x/predict/extra", {Permission.DEPLOY}),
    ("GET", "//v1//keys", {Permission.ADMIN}),
])
def test_permission_table(method: str, path: str, expected: set[Permission] | None) -> None:
    route = Routes().parse(method, path)
    assert (None if route.is_open else set(route.permissions)) == expected


def test_metrics_can_be_public() -> None:
    assert Routes(public_metrics=True).parse("GET", "/metrics").is_open
