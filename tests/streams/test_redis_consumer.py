"""The stream consumer on real Redis Streams, scoring through a real server's predictor
(in-process: the app's lifespan runs, without HTTP for the events): results in order,
dead letters, routing by key, monitoring, retries, and at-least-once delivery when a
write fails or a consumer dies."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelhost import Client
from modelhost.serving import ModelhostApp, MonitorOptions, PoolOptions, ServerOptions, create_app
from modelhost.streams import StreamConsumer, StreamOptions, open_sink, open_source
from modelhost.streams.redis_streams import RedisSink, connect
from tests.fixtures_models import iris, iris_example, iris_model
from tests.services import require_redis

pytestmark = pytest.mark.anyio


@dataclass
class Streams:
    url: str
    name: str

    def uri(self, suffix: str) -> str:
        return f"{self.url.rsplit('/', 1)[0]}/{self.name}-{suffix}"


@pytest.fixture
async def streams() -> AsyncIterator[Streams]:
    url = require_redis()
    names = Streams(url, f"test-{uuid.uuid4().hex[:12]}")
    yield names
    redis = connect(url)
    await redis.delete(*(f"{names.name}-{s}" for s in ("in", "out", "in-dead")))
    await redis.aclose()


@pytest.fixture
def registered(sqlite_client: Client) -> Client:
    for c in (1.0, 0.5):
        sqlite_client.registry.register(iris_model(C=c), name="iris",
                                        input_example=iris_example())
    sqlite_client.registry.transition("iris", "1.0.0", "staging")
    sqlite_client.registry.transition("iris", "1.0.0", "production")
    return sqlite_client


@asynccontextmanager
async def server(client: Client) -> AsyncIterator[ModelhostApp]:
    app = create_app(client.registry, options=ServerOptions(
        pool=PoolOptions(reload_interval_s=0.2),
        monitor=MonitorOptions(flush_s=0.2, alerts=False, rollouts=False)),
        predictions=client.predictions, profiles=client.profiles,
        deployments=client.deployments, leases=client.leases)
    async with app.running():
        yield app


def consumer(app: ModelhostApp, streams: Streams, *, name: str = "c1",
             claim_idle_ms: int = 30_000, sink: Any = None,
             **options: Any) -> StreamConsumer:
    return StreamConsumer(
        "iris", open_source(streams.uri("in"), group="g", consumer=name,
                            claim_idle_ms=claim_idle_ms),
        sink or open_sink(streams.uri("out")), open_sink(streams.uri("in-dead")),
        app.server.predictor, app.server.observers,
        options=StreamOptions(block_ms=20, retry_pause_s=0.01, write_pause_s=0.01,
                              **options))


async def produce(streams: Streams, events: Sequence[tuple[Any, str | None]]) -> list[str]:
    redis = connect(streams.url)
    ids = []
    for body, key in events:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        fields = {"body": data, **({"key": key} if key is not None else {})}
        ids.append((await redis.xadd(f"{streams.name}-in", fields)).decode())
    await redis.aclose()
    return ids


async def entries(streams: Streams, suffix: str) -> list[dict[str, str]]:
    redis = connect(streams.url)
    found = await redis.xrange(f"{streams.name}-{suffix}")
    await redis.aclose()
    return [{k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
            for _, fields in found]


async def run_until(worker: StreamConsumer, streams: Streams, *, results: int,
                    dead: int = 0, timeout_s: float = 20.0) -> None:
    task = asyncio.create_task(worker.run())
    try:
        with anyio_fail_after(timeout_s):
            while (len(await entries(streams, "out")) < results
                   or len(await entries(streams, "in-dead")) < dead):
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


def anyio_fail_after(seconds: float) -> Any:
    import anyio

    return anyio.fail_after(seconds)


async def pending(streams: Streams) -> int:
    redis = connect(streams.url)
    info = await redis.xpending(f"{streams.name}-in", "g")
    await redis.aclose()
    return int(info["pending"])


def _rows(n: int) -> list[dict[str, float]]:
    X, _ = iris()
    return X.sample(n, replace=True, random_state=1).to_dict(orient="records")


async def test_events_are_scored_in_order_as_in_process(registered: Client,
                                                        streams: Streams) -> None:
    rows = _rows(300)
    ids = await produce(streams, [(r, f"user-{i % 11}") for i, r in enumerate(rows)]
                        + [({"inputs": rows[:4]}, "batch")])
    async with server(registered) as app:
        worker = consumer(app, streams, batch=64)
        await run_until(worker, streams, results=301)
    out = await entries(streams, "out")
    assert [e["source_id"] for e in out] == ids  # the source's order, so each key's too
    model = iris_model()
    X = pd.DataFrame(rows)
    expected = model.predict(X).tolist()
    assert [json.loads(e["prediction"]) for e in out[:300]] == expected
    np.testing.assert_allclose([json.loads(e["probabilities"]) for e in out[:300]],
                               model.predict_proba(X), atol=1e-9)
    assert json.loads(out[300]["prediction"]) == expected[:4]
    assert {e["version"] for e in out} == {"1.0.0"}
    assert [e["key"] for e in out[:3]] == ["user-0", "user-1", "user-2"]
    assert len({e["request_id"] for e in out}) == 301
    assert (worker.counts.scored, worker.counts.dead) == (301, 0)
    assert await pending(streams) == 0


async def test_events_that_cannot_be_scored_become_dead_letters_and_the_stream_goes_on(
        registered: Client, streams: Streams) -> None:
    good = _rows(3)
    bad_row = {**good[0], "petal_width": "wide"}
    events: list[tuple[Any, str | None]] = [
        (good[0], "a"), (b"\xff not json", "b"), (bad_row, "c"), (good[1], None),
        ({"inputs": [good[2]], "extra": 1}, "d"), (good[2], "e"),
        # Rows the predictor refuses, as it refuses them over HTTP.
        ({"inputs": []}, "f"), ({"inputs": [1, 2]}, "g"),
        ({"inputs": [good[0]], "params": [1]}, "h")]
    ids = await produce(streams, events)
    async with server(registered) as app:
        worker = consumer(app, streams)
        await run_until(worker, streams, results=3, dead=6)
    out = await entries(streams, "out")
    assert [e["source_id"] for e in out] == [ids[0], ids[3], ids[5]]
    redis = connect(streams.url)
    dead = await redis.xrange(f"{streams.name}-in-dead")
    await redis.aclose()
    letters = {f[b"source_id"].decode(): f for _, f in dead}
    assert set(letters) == {ids[1], ids[2], ids[4], ids[6], ids[7], ids[8]}
    assert b"params" in letters[ids[8]][b"reason"]
    assert b"no rows" in letters[ids[6]][b"reason"]
    assert b"expected a record" in letters[ids[7]][b"reason"]
    assert letters[ids[1]][b"body"] == b"\xff not json"  # the bytes as they came
    assert b"not valid JSON" in letters[ids[1]][b"reason"]
    assert b"petal_width" in letters[ids[2]][b"reason"]
    assert letters[ids[2]][b"key"] == b"c"
    assert b"extra" in letters[ids[4]][b"reason"]
    assert worker.counts.retries == 0  # bad input is never worth a second try
    assert await pending(streams) == 0


async def test_the_deployment_routes_each_key_to_one_arm_and_the_log_sees_every_event(
        registered: Client, streams: Streams) -> None:
    registered.deploy("iris", "1.0.1", strategy="canary", steps=[50, 100])
    rows = _rows(400)
    await produce(streams, [(r, f"user-{i % 40}") for i, r in enumerate(rows)])
    async with server(registered) as app:
        worker = consumer(app, streams)
        await run_until(worker, streams, results=400)
        out = await entries(streams, "out")
        by_key: dict[str, set[str]] = {}
        for e in out:
            by_key.setdefault(e["key"], set()).add(e["version"])
        assert all(len(v) == 1 for v in by_key.values())  # sticky per key
        arms = [v.pop() for v in by_key.values()]
        assert 8 <= arms.count("1.0.1") <= 32  # about half the keys
        # Monitoring sees the events as requests: the log has them, feedback joins.
        rid = out[0]["request_id"]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answer = await http.post("/v1/feedback",
                                     json={"request_id": rid, "label": 0})
            assert answer.status_code == 202, answer.text
            metrics = (await http.get("/metrics")).text
    assert 'protocol="stream"' in metrics
    logged = registered.predictions.find([e["request_id"] for e in out])
    assert len(logged) == 400


class FlakySink(RedisSink):
    """Fails its first write, as a broker that drops the connection."""

    failed = False

    async def write(self, entries: Any) -> None:
        if not self.failed and entries:
            self.failed = True
            raise ConnectionError("the sink went away")
        await super().write(entries)


async def test_a_failed_write_acknowledges_nothing_and_the_events_are_scored_again(
        registered: Client, streams: Streams) -> None:
    from modelhost.streams.redis_streams import RedisStream

    ids = await produce(streams, [(r, None) for r in _rows(50)])
    async with server(registered) as app:
        sink = FlakySink(RedisStream.parse(streams.uri("out")))
        worker = consumer(app, streams, sink=sink, batch=20)
        await run_until(worker, streams, results=50)
    out = await entries(streams, "out")
    assert worker.counts.write_failures == 1
    assert [e["source_id"] for e in out] == ids  # none lost, none twice (not written)
    assert await pending(streams) == 0


async def test_a_dead_consumers_events_are_taken_over(registered: Client,
                                                      streams: Streams) -> None:
    ids = await produce(streams, [(r, None) for r in _rows(30)])
    # A consumer reads ten events and dies before writing anything.
    doomed = open_source(streams.uri("in"), group="g", consumer="doomed")
    await doomed.open()
    taken = await doomed.read(10, 10)
    await doomed.close()
    assert [e.id for e in taken] == ids[:10]
    async with server(registered) as app:
        worker = consumer(app, streams, name="heir", claim_idle_ms=200)
        await run_until(worker, streams, results=30)
    out = await entries(streams, "out")
    assert sorted(e["source_id"] for e in out) == sorted(ids)
    assert await pending(streams) == 0


async def test_an_event_handed_out_too_often_is_a_dead_letter(registered: Client,
                                                              streams: Streams) -> None:
    ids = await produce(streams, [(r, None) for r in _rows(2)])
    # A consumer that dies on its events each time: handed out three times already.
    for _ in range(3):
        dying = open_source(streams.uri("in"), group="g", consumer="c1")
        await dying.open()
        assert len(await dying.read(10, 10)) == 2
        await dying.close()
    async with server(registered) as app:
        worker = consumer(app, streams, max_attempts=3)
        await run_until(worker, streams, results=0, dead=2)
    letters = await entries(streams, "in-dead")
    assert [d["source_id"] for d in letters] == ids
    assert all("handed out 4 times" in d["reason"] for d in letters), letters
    assert await pending(streams) == 0


async def test_a_passing_failure_is_retried_and_a_lasting_one_is_a_dead_letter(
        registered: Client, streams: Streams, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = await produce(streams, [(r, None) for r in _rows(2)])
    async with server(registered) as app:
        predictor = app.server.predictor
        real = predictor.predict
        calls = {"n": 0}

        async def failing(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            # One event at a time: the first fails twice and then scores (calls 1-3),
            # the second fails on every try (calls 4-6).
            if calls["n"] != 3:
                raise RuntimeError("the model failed")
            return await real(*args, **kwargs)

        monkeypatch.setattr(predictor, "predict", failing)
        worker = consumer(app, streams, max_attempts=3, batch=1)
        await run_until(worker, streams, results=1, dead=1)
    out, letters = await entries(streams, "out"), await entries(streams, "in-dead")
    assert [e["source_id"] for e in out] == [ids[0]]
    assert [d["source_id"] for d in letters] == [ids[1]]
    assert "raised RuntimeError 3 times" in letters[0]["reason"]
    assert worker.counts.retries == 2 + 2


async def test_a_backfill_stops_once_the_stream_is_quiet(registered: Client,
                                                         streams: Streams) -> None:
    await produce(streams, [(r, None) for r in _rows(40)])
    async with server(registered) as app:
        worker = consumer(app, streams, idle_exit_s=0.3)
        await asyncio.wait_for(worker.run(), 20)  # returns by itself
    assert worker.counts.scored == 40 and await pending(streams) == 0


async def test_events_feed_drift_like_requests(registered: Client, streams: Streams) -> None:
    X, y = iris()
    registered.registry.attach_reference("iris", "1.0.0", X.assign(target=y),
                                         source="iris")
    shifted = X.assign(sepal_width=X["sepal_width"] + 2.0,
                       petal_length=X["petal_length"] + 4.0)
    await produce(streams, [(r, None) for r in shifted.to_dict(orient="records")])
    async with server(registered) as app:
        await run_until(consumer(app, streams), streams, results=150)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            with anyio_fail_after(20):
                while True:
                    body = (await http.get("/v1/models/iris/monitoring/drift")).json()
                    if body["requests"] >= 150:
                        break
                    await asyncio.sleep(0.05)
    assert (body["requests"], body["rows"]) == (150, 150)
    drifted = {f["name"] for f in body["features"] if f["drifted"]}
    assert drifted == {"sepal_width", "petal_length"}, body["features"]
