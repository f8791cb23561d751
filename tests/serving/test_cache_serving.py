"""The prediction cache inside the server: opt-in per model, per-version keys, Redis
shared by replicas, and Redis going down never failing a request."""

from __future__ import annotations

import pytest
from tests.services import require_redis
from tests.serving.conftest import records, serve

from modelhost import Client

pytestmark = pytest.mark.anyio


def _metric(text: str, name: str, version: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'version="{version}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_cache_is_opt_in_and_per_version(iris_client: Client) -> None:
    body = {"inputs": records(2)}
    async with serve(iris_client) as (_, http):
        await http.post("/v1/models/iris/predict", json=body)
        text = (await http.get("/metrics")).text
        assert _metric(text, "modelhost_cache_misses_total", "1.0.0") == 0  # not opted in
    iris_client.registry.set_tags("iris", {"serving.cache": "true"})
    async with serve(iris_client) as (_, http):
        first = (await http.post("/v1/models/iris/predict", json=body)).json()
        second = (await http.post("/v1/models/iris/predict", json=body)).json()
        assert first["predictions"] == second["predictions"]
        assert first["probabilities"] == second["probabilities"]
        other = (await http.post("/v1/models/iris/versions/1.0.1/predict", json=body)).json()
        assert other["version"] == "1.0.1"
        text = (await http.get("/metrics")).text
        assert _metric(text, "modelhost_cache_hits_total", "1.0.0") == 1
        assert _metric(text, "modelhost_cache_misses_total", "1.0.0") == 1
        assert _metric(text, "modelhost_cache_misses_total", "1.0.1") == 1


@pytest.mark.parametrize("redis_url", ["live", "down"])
async def test_redis_cache_shared_and_degrading(iris_client: Client, redis_url: str) -> None:
    url = require_redis() if redis_url == "live" else "redis://127.0.0.1:1/0"
    iris_client.registry.set_tags("iris", {"serving.cache": "true"})
    body = {"inputs": records(3)}
    async with serve(iris_client, redis_url=url) as (app, http):
        await app.server.predictor.cache.drop_version(  # type: ignore[union-attr]
            app.server.pool._served[("iris", "1.0.0")].version.artifact_digest)
        answers = [await http.post("/v1/models/iris/predict", json=body) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        text = (await http.get("/metrics")).text
    hits = _metric(text, "modelhost_cache_hits_total", "1.0.0")
    assert hits == (2 if redis_url == "live" else 0)
    if redis_url == "live":  # a second replica shares the entries
        async with serve(iris_client, redis_url=url) as (_, http):
            await http.post("/v1/models/iris/predict", json=body)
            text = (await http.get("/metrics")).text
        assert _metric(text, "modelhost_cache_hits_total", "1.0.0") == 1
