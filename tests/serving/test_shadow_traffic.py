"""Shadow traffic through the real app: the caller's answer and latency never depend on
the shadow (a shadow that takes a second per call, one that always fails), the copies
are counted and compared, and the analysis shows them."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from tests.conftest import TODAY
from tests.serving.conftest import records

from modelhost import Client
from modelhost._utils import utcnow
from modelhost.serving import ModelhostApp, PoolOptions, ServerOptions, create_app
from modelhost.serving.server import MonitorOptions
from modelhost.store.shadows import ShadowCounts

pytestmark = pytest.mark.anyio

SLOW = "tests.serving.faulty_models:SlowModel"  # a second per call
FAILING = "tests.serving.faulty_models:RaisingModel"


def shadow_version(client: Client, target: str | None) -> str:
    """Register the shadow: ``target`` by import path with iris's signature, or (None)
    another copy of iris's own model."""
    registry = client.registry
    signature = registry.get_version("iris", "1.0.0").signature
    if target is None:
        return "1.0.1"
    return registry.register(target, name="iris", flavor="python",
                             signature=signature).version


@asynccontextmanager
async def shadow_app(client: Client) -> AsyncIterator[tuple[ModelhostApp, httpx.AsyncClient]]:
    app = create_app(client.registry, options=ServerOptions(
        pool=PoolOptions(reload_interval_s=0.1),
        monitor=MonitorOptions(flush_s=0.1, rollouts=False)),
        predictions=client.predictions, profiles=client.profiles,
        deployments=client.deployments, shadows=client.shadows, leases=client.leases,
        today=lambda: TODAY)
    async with app.running(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                base_url="http://test") as http:
        yield app, http


async def wait_loaded(app: ModelhostApp, version: str) -> None:
    deadline = time.monotonic() + 20
    while not app.server.pool.loaded("iris", version):
        assert time.monotonic() < deadline, f"{version} never loaded"
        await asyncio.sleep(0.05)


def totals(client: Client, stable: str, shadow: str) -> ShadowCounts:
    now = utcnow()
    return client.shadows.totals("iris", stable, shadow, start=now - dt.timedelta(hours=1),
                                 end=now + dt.timedelta(hours=1))


@pytest.mark.parametrize("target", [SLOW, FAILING])
async def test_a_slow_or_failing_shadow_never_touches_the_answer(iris_client: Client,
                                                                target: str) -> None:
    version = shadow_version(iris_client, target)
    iris_client.deploy("iris", version, strategy="shadow", fraction=1.0)
    async with shadow_app(iris_client) as (app, http):
        await wait_loaded(app, version)
        body = {"inputs": records(2)}
        started = time.perf_counter()
        answers = [await http.post("/v1/models/iris/predict", json=body) for _ in range(6)]
        elapsed = time.perf_counter() - started
        assert [a.status_code for a in answers] == [200] * 6
        assert {a.headers["x-model-version"] for a in answers} == {"1.0.0"}
        # Six answers while the slow shadow takes a second per call: far below 6 s.
        assert elapsed < 2.0, elapsed
        deadline = time.monotonic() + 15
        while True:
            counted = totals(iris_client, "1.0.0", version)
            if counted.requests + counted.skipped >= 6 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    if target == FAILING:
        assert counted.errors == counted.requests >= 1 and counted.rows == 0
    else:
        assert counted.requests >= 1 and counted.errors == 0
        assert counted.rows == 2 * counted.requests  # two rows per copy, compared
    assert counted.requests + counted.skipped == 6


async def test_an_agreeing_shadow_shows_in_the_analysis(iris_client: Client) -> None:
    iris_client.deploy("iris", "1.0.1", strategy="shadow", fraction=1.0)
    async with shadow_app(iris_client) as (app, http):
        await wait_loaded(app, "1.0.1")
        for _ in range(10):
            answer = await http.post("/v1/models/iris/predict", json={"inputs": records(3)})
            assert answer.status_code == 200
        deadline = time.monotonic() + 15
        while totals(iris_client, "1.0.0", "1.0.1").requests < 10:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        analysis = (await http.get("/v1/deployments/iris/analysis")).json()
    shadow = analysis["shadow"]
    assert (shadow["version"], shadow["fraction"], shadow["requests"]) == ("1.0.1", 1.0, 10)
    assert shadow["rows_compared"] == 30 and shadow["errors"] == 0
    assert shadow["agreement_rate"] == 1.0  # the same model, registered twice
    assert shadow["mean_latency_ms"] is not None
