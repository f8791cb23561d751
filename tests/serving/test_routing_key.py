"""Routing through the real server: with a two-arm routing the version of each request
is the pure router's choice, sticky per ``X-Routing-Key`` on every protocol; a pin
ignores the key; without a key both arms take traffic; a routing switches in only once
all its arms are loaded.

Deployments do not exist yet, so the two-arm routing is published directly (the table
the watcher would publish, applied to the pool) with a watcher that never ticks on its
own (``QUIET``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import MappingProxyType
from typing import Any

import httpx
import numpy as np
import pytest
from tests.fixtures_models import iris_example, iris_model
from tests.serving.conftest import records, serve

from modelhost import Client
from modelhost.flavors import LOAD_LOCK
from modelhost.rollout import Arm, ArmRole, Routing, choose
from modelhost.serving import ModelhostApp, PoolOptions
from modelhost.serving.table import ModelEntry, RoutingTable

pytestmark = pytest.mark.anyio

QUIET = PoolOptions(reload_interval_s=3600.0)  # the watcher never replaces our table
HALVES = Routing("iris", (Arm("1.0.0", 0.5), Arm("1.0.1", 0.5, ArmRole.CANDIDATE)))
KEYS = [f"user-{i}" for i in range(200)]


def table_with(app: ModelhostApp, routing: Routing) -> RoutingTable:
    """The current table with ``routing`` for iris (aliases and revision kept)."""
    current = app.server.watcher.table
    entry = current.models["iris"]
    return RoutingTable(revision=current.revision, models=MappingProxyType({
        **current.models,
        "iris": ModelEntry(routing=routing, aliases=entry.aliases, cached=False)}))


async def publish(app: ModelhostApp, routing: Routing, *, wait: bool = True) -> None:
    table = table_with(app, routing)
    app.server.watcher.table = table
    await app.server.pool.apply(table)
    if wait:
        assert await app.server.pool.wait_until_ready(timeout_s=20)
        assert app.server.pool.active("iris") == routing


def v2_request(rows: int = 1) -> dict[str, Any]:
    values = iris_example(rows=rows).to_numpy(dtype=np.float64)
    return {"inputs": [{"name": "input-0", "shape": [rows, 4], "datatype": "FP64",
                        "data": values.reshape(-1).tolist()}]}


def mlflow_request(rows: int = 1) -> dict[str, Any]:
    X = iris_example(rows=rows)
    return {"dataframe_split": {"columns": list(X.columns), "data": X.values.tolist()}}


async def v1_version(http: httpx.AsyncClient, key: str | None = None, **headers: str) -> str:
    if key is not None:
        headers["X-Routing-Key"] = key
    response = await http.post("/v1/models/iris/predict", json={"inputs": records(1)},
                               headers=headers)
    assert response.status_code == 200, response.text
    version: str = response.json()["version"]
    assert response.headers["x-model-version"] == version
    return version


async def test_each_key_gets_the_routers_version_and_keeps_it(iris_client: Client) -> None:
    expected = {key: choose(HALVES, key).version for key in KEYS}
    assert set(expected.values()) == {"1.0.0", "1.0.1"}  # the keys exercise both arms
    async with serve(iris_client, pool=QUIET) as (app, http):
        await publish(app, HALVES)
        answered = {key: await v1_version(http, key) for key in KEYS}
        assert answered == expected
        for key in KEYS[:5]:
            assert {await v1_version(http, key) for _ in range(20)} == {expected[key]}


async def test_the_key_routes_open_inference_v2(iris_client: Client) -> None:
    expected = {key: choose(HALVES, key).version for key in KEYS}
    async with serve(iris_client, pool=QUIET) as (app, http):
        await publish(app, HALVES)
        answered = {}
        for key in KEYS:
            response = await http.post("/v2/models/iris/infer", json=v2_request(),
                                       headers={"X-Routing-Key": key})
            assert response.status_code == 200, response.text
            assert response.headers["x-model-version"] == response.json()["model_version"]
            answered[key] = response.json()["model_version"]
        assert answered == expected
        sticky = {(await http.post("/v2/models/iris/infer", json=v2_request(),
                                   headers={"X-Routing-Key": KEYS[0]})).json()["model_version"]
                  for _ in range(20)}
        assert sticky == {expected[KEYS[0]]}


async def test_the_key_routes_mlflow_invocations(iris_client: Client) -> None:
    expected = {key: choose(HALVES, key).version for key in KEYS}
    predictions = {v: iris_model(C=c).predict(iris_example(rows=1)).tolist()
                   for v, c in (("1.0.0", 1.0), ("1.0.1", 0.01))}
    async with serve(iris_client, pool=QUIET) as (app, http):
        await publish(app, HALVES)
        answered = {}
        for key in KEYS:
            response = await http.post("/v1/models/iris/invocations", json=mlflow_request(),
                                       headers={"X-Routing-Key": key})
            assert response.status_code == 200, response.text
            version = response.headers["x-model-version"]
            assert response.json() == {"predictions": predictions[version]}
            answered[key] = version
        assert answered == expected
        sticky = {(await http.post("/v1/models/iris/invocations", json=mlflow_request(),
                                   headers={"X-Routing-Key": KEYS[1]})
                   ).headers["x-model-version"] for _ in range(20)}
        assert sticky == {expected[KEYS[1]]}


async def test_a_pin_ignores_the_key(iris_client: Client) -> None:
    to_candidate = next(k for k in KEYS if choose(HALVES, k).version == "1.0.1")
    to_stable = next(k for k in KEYS if choose(HALVES, k).version == "1.0.0")
    async with serve(iris_client, pool=QUIET) as (app, http):
        await publish(app, HALVES)
        assert await v1_version(http, to_candidate) == "1.0.1"  # the key alone moves it
        assert await v1_version(http, to_candidate, **{"X-Model-Version": "1.0.0"}) == "1.0.0"
        response = await http.post("/v1/models/iris/versions/1.0.1/predict",
                                   json={"inputs": records(1)},
                                   headers={"X-Routing-Key": to_stable})
        assert response.status_code == 200 and response.json()["version"] == "1.0.1"
        v2 = await http.post("/v2/models/iris/versions/1.0.0/infer", json=v2_request(),
                             headers={"X-Routing-Key": to_candidate})
        assert v2.status_code == 200 and v2.json()["model_version"] == "1.0.0"


async def test_without_a_key_both_arms_take_traffic(iris_client: Client) -> None:
    async with serve(iris_client, pool=QUIET) as (app, http):
        await publish(app, HALVES)
        seen = Counter([await v1_version(http) for _ in range(200)])
        assert set(seen) == {"1.0.0", "1.0.1"}
        # Binomial(200, 0.5): sd ~7.1, so 60 is more than 5 sd below the mean of 100.
        assert min(seen.values()) >= 60, seen


async def test_a_routing_switches_in_only_once_every_arm_is_loaded(
        iris_client: Client) -> None:
    fresh = iris_client.registry.register(iris_model(C=0.1), name="iris",
                                          input_example=iris_example())
    assert fresh.version == "1.0.2"
    before = Routing.single("iris", "1.0.0")
    after = Routing("iris", (Arm("1.0.0", 0.5), Arm("1.0.2", 0.5, ArmRole.CANDIDATE)))
    to_candidate = [k for k in KEYS if choose(after, k).version == "1.0.2"][:10]
    async with serve(iris_client, pool=QUIET) as (app, http):
        pool = app.server.pool
        assert pool.active("iris") == before
        # The pool loads under LOAD_LOCK: holding it keeps the candidate loading.
        LOAD_LOCK.acquire()
        try:
            await publish(app, after, wait=False)
            for _ in range(10):
                await asyncio.sleep(0.02)
                assert not pool.loaded("iris", "1.0.2")
                assert pool.active("iris") == before
            for key in to_candidate:  # the new routing does not take traffic yet
                assert await v1_version(http, key) == "1.0.0"
            ready, detail = pool.ready()
            assert ready and detail["loading"] == {"iris": "1.0.2"}
        finally:
            LOAD_LOCK.release()
        assert await pool.wait_until_ready(timeout_s=20)
        assert pool.loaded("iris", "1.0.2")
        assert pool.active("iris") == after
        for key in to_candidate:
            assert await v1_version(http, key) == "1.0.2"
