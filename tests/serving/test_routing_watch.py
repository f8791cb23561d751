"""The pool's watcher: one small query per idle tick, the routing state re-read only when
the routing revision changed, and readiness that follows the database at every tick."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text
from tests.fixtures_models import iris_example, iris_model
from tests.serving.conftest import records, serve
from tests.sql_statements import statements

from modelhost import Client
from modelhost.rollout import Routing
from modelhost.serving import PoolOptions

pytestmark = pytest.mark.anyio

QUIET = PoolOptions(reload_interval_s=3600.0)  # only the refreshes a test makes itself


async def test_an_idle_tick_is_one_query_and_a_change_is_read_in_three(
        iris_client: Client) -> None:
    iris_client.registry.register(iris_model(), name="other", input_example=iris_example())
    async with serve(iris_client, pool=QUIET) as (app, _):
        watcher = app.server.watcher
        with statements(iris_client.db.engine) as idle:
            await watcher.refresh()
            await watcher.refresh()
        assert len(idle) == 2, idle
        iris_client.registry.set_tags("iris", {"serving.cache": "true"})
        with statements(iris_client.db.engine) as changed:
            await watcher.refresh()
        assert len(changed) == 3, changed  # revision, stages, deployments
        assert watcher.table.models["iris"].cached
        with statements(iris_client.db.engine) as idle_again:
            await watcher.refresh()
        assert len(idle_again) == 1


async def test_a_promotion_is_picked_up_within_one_reload_interval(
        iris_client: Client) -> None:
    interval = 0.5
    async with serve(iris_client, pool=PoolOptions(reload_interval_s=interval)) as (app, http):
        pool, watcher = app.server.pool, app.server.watcher
        assert watcher.table.routing("iris") == Routing.single("iris", "1.0.0")
        iris_client.registry.transition("iris", "1.0.1", "staging")
        iris_client.registry.transition("iris", "1.0.1", "production")
        promoted = time.monotonic()
        while watcher.table.routing("iris") != Routing.single("iris", "1.0.1"):
            assert time.monotonic() - promoted < interval + 0.25, "promotion not seen"
            await asyncio.sleep(0.02)
        await pool.wait_until_ready(timeout_s=10)
        deadline = time.monotonic() + 10
        while pool.routes["iris"] != "1.0.1":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(1)})
        assert response.status_code == 200 and response.json()["version"] == "1.0.1"


async def test_aliases_and_archiving_are_applied_after_a_change(iris_client: Client) -> None:
    async with serve(iris_client, pool=QUIET) as (app, http):
        pool, watcher = app.server.pool, app.server.watcher
        iris_client.registry.set_alias("iris", "challenger", "1.0.1")
        await watcher.refresh()
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(1)},
                                   headers={"X-Model-Version": "challenger"})
        assert response.status_code == 200 and response.json()["version"] == "1.0.1"
        iris_client.registry.transition("iris", "1.0.0", "archived")
        await watcher.refresh()
        assert watcher.table.routing("iris") is None
        assert "iris" not in pool.routes
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(1)})
        assert response.status_code == 404


async def test_a_model_registered_since_the_last_read_is_found(iris_client: Client) -> None:
    async with serve(iris_client, pool=QUIET) as (_, http):
        registry = iris_client.registry
        registry.register(iris_model(), name="fresh", input_example=iris_example())
        registry.transition("fresh", "1.0.0", "staging")
        registry.transition("fresh", "1.0.0", "production")
        response = await http.post("/v1/models/fresh/predict", json={"inputs": records(1)})
        assert response.status_code == 200, response.text
        assert response.json()["version"] == "1.0.0"


async def test_readiness_follows_a_failing_database_at_every_tick(iris_client: Client) -> None:
    engine = iris_client.db.engine
    async with serve(iris_client, pool=QUIET) as (app, http):
        watcher = app.server.watcher
        await watcher.refresh()
        assert (await http.get("/readyz")).status_code == 200
        with engine.begin() as conn:  # the revision cannot be read any more
            conn.execute(text("ALTER TABLE routing_revision RENAME TO routing_revision_gone"))
        try:
            for _ in range(2):
                await watcher.refresh()
                assert watcher.database_ok is False
                ready = await http.get("/readyz")
                assert ready.status_code == 503 and ready.json()["database"] is False
            response = await http.post("/v1/models/iris/predict",
                                       json={"inputs": records(1)})
            assert response.status_code == 200  # loaded models keep serving
        finally:
            with engine.begin() as conn:
                conn.execute(text(
                    "ALTER TABLE routing_revision_gone RENAME TO routing_revision"))
        iris_client.registry.transition("iris", "1.0.1", "staging")
        await watcher.refresh()
        assert watcher.database_ok is True
        assert (await http.get("/readyz")).status_code == 200


async def test_a_check_that_read_an_older_revision_never_replaces_a_newer_table(
        iris_client: Client) -> None:
    """Two checks may overlap (the watcher's and the lookup of a new model): the slower
    one, holding an older state, must not switch a model back."""
    from modelhost.serving.table import RoutingTable

    async with serve(iris_client, pool=QUIET) as (app, _):
        watcher = app.server.watcher
        newer = RoutingTable(revision=10**9)  # as if another check had read it meanwhile
        watcher.table = newer
        await watcher.refresh(reread=True)  # reads the database's (older) revision
        assert watcher.table is newer
