"""Observers of the prediction path on the real app: one Observation per answered request,
filled from what the request went through (data only on request), errors included; a
failing observer changes nothing but a counter and one log line a minute; observers run
after the answer is sent; the metrics, themselves an observer, still count per version."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import TODAY
from tests.fixtures_models import iris_example, iris_model
from tests.serving.conftest import records

from modelhost import Client
from modelhost.rollout import ArmRole
from modelhost.serving import ModelhostApp, PoolOptions, ServerOptions, create_app
from modelhost.serving.observers import Observation, Observer
from modelhost.serving.routes import Protocol

pytestmark = pytest.mark.anyio

QUIET = PoolOptions(reload_interval_s=3600.0)


class Recorder:
    def __init__(self, *, wants_data: bool = False, name: str = "rec") -> None:
        self.name = name
        self.wants_data = wants_data
        self.seen: list[Observation] = []

    def observe(self, observation: Observation) -> None:
        self.seen.append(observation)


class Boom:
    name = "boom"
    wants_data = False

    def observe(self, observation: Observation) -> None:
        raise RuntimeError("boom")


@asynccontextmanager
async def serve_observed(client: Client, observers: list[Observer], **options: Any,
                         ) -> AsyncIterator[tuple[ModelhostApp, httpx.AsyncClient]]:
    """As conftest.serve, with observers."""
    app = create_app(client.registry, options=ServerOptions(pool=QUIET, **options),
                     keys=client.keys, audit=client.audit, observers=observers,
                     today=lambda: TODAY)
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield app, http


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric: sorted labels -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def bad_records(rows: int) -> list[dict[str, float]]:
    """Records whose first column is misnamed: refused after the version is chosen."""
    return [{"sepal_wrong" if i == 0 else k: v for i, (k, v) in enumerate(row.items())}
            for row in records(rows)]


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def test_one_observation_per_request_without_data(iris_client: Client) -> None:
    rec = Recorder()
    async with serve_observed(iris_client, [rec]) as (_, http):
        unpinned = await http.post("/v1/models/iris/predict", json={"inputs": records(3)})
        assert unpinned.status_code == 200, unpinned.text
        assert len(rec.seen) == 1
        pinned = await http.post("/v1/models/iris/predict", json={"inputs": records(2)},
                                 headers={"X-Model-Version": "1.0.1"})
        assert pinned.status_code == 200, pinned.text
        v2 = await http.post("/v2/models/iris/infer", json={"inputs": [
            {"name": "input-0", "shape": [4, 4], "datatype": "FP64",
             "data": iris_example(rows=4).to_numpy(dtype=np.float64).reshape(-1).tolist()}]})
        assert v2.status_code == 200, v2.text
    assert len(rec.seen) == 3
    first, second, third = rec.seen
    assert (first.route.protocol, first.model, first.version, first.arm, first.status,
            first.rows, first.error_code) == (Protocol.V1, "iris", "1.0.0", ArmRole.STABLE,
                                              200, 3, None)
    assert (second.route.protocol, second.model, second.version, second.arm,
            second.status, second.rows, second.error_code) == (
        Protocol.V1, "iris", "1.0.1", None, 200, 2, None)
    assert (third.route.protocol, third.model, third.version, third.arm, third.status,
            third.rows) == (Protocol.V2, "iris", "1.0.0", ArmRole.STABLE, 200, 4)
    for observation, response in zip(rec.seen, (unpinned, pinned, v2), strict=True):
        assert observation.request_id == response.headers["x-request-id"]
        assert observation.latency_s > 0
        assert observation.cached is None
        assert (observation.inputs, observation.predictions,
                observation.probabilities) == (None, None, None)


async def test_an_observer_that_wants_data_gets_inputs_and_predictions(
        iris_client: Client) -> None:
    rec = Recorder(wants_data=True)
    X = iris_example(rows=4)
    async with serve_observed(iris_client, [rec]) as (_, http):
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(4)})
        assert response.status_code == 200, response.text
    (seen,) = rec.seen
    body = response.json()
    assert seen.rows == 4 and len(seen.inputs) == 4
    assert np.allclose(np.asarray(seen.inputs, dtype=np.float64), X.to_numpy())
    assert np.asarray(seen.predictions).tolist() == body["predictions"]
    assert body["predictions"] == iris_model().predict(X).tolist()
    assert np.allclose(np.asarray(seen.probabilities), body["probabilities"])
    assert np.asarray(seen.probabilities).shape == (4, 3)


async def test_errors_are_observed_with_what_was_known(iris_client: Client) -> None:
    registry = iris_client.registry
    registry.register(iris_model(), name="other", input_example=iris_example())
    rec = Recorder()
    bad = bad_records(2)
    async with serve_observed(iris_client, [rec]) as (_, http):
        invalid = await http.post("/v1/models/iris/predict", json={"inputs": bad})
        unknown = await http.post("/v1/models/nope/predict", json={"inputs": records(1)})
        unserved = await http.post("/v1/models/other/predict", json={"inputs": records(1)})
    assert invalid.status_code == 422, invalid.text
    assert invalid.json()["error"]["code"] == "invalid_input"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert unserved.status_code == 404 and unserved.json()["error"]["code"] == "not_found"
    assert "no production version" in unserved.json()["error"]["message"]
    assert [(o.model, o.version, o.arm, o.status, o.rows, o.error_code, o.request_id)
            for o in rec.seen] == [
        ("iris", "1.0.0", ArmRole.STABLE, 422, 0, "invalid_input",
         invalid.headers["x-request-id"]),
        (None, None, None, 404, 0, "not_found", unknown.headers["x-request-id"]),
        ("other", None, None, 404, 0, "not_found", unserved.headers["x-request-id"])]


async def test_a_failing_observer_is_counted_and_logged_once_a_minute(
        iris_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    expected = iris_model().predict(iris_example(rows=2)).tolist()
    caplog.set_level(logging.ERROR, logger="modelhost.serving.observers")
    async with serve_observed(iris_client, [Boom(), rec]) as (_, http):
        for _ in range(3):
            response = await http.post("/v1/models/iris/predict",
                                       json={"inputs": records(2)})
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == expected
        metrics = await http.get("/metrics")
    assert len(rec.seen) == 3
    assert [o.status for o in rec.seen] == [200, 200, 200]
    errors = samples(metrics.text, "modelhost_observer_errors_total")
    assert errors == {key(observer="boom"): 3.0}
    requests = samples(metrics.text, "modelhost_requests_total")
    assert requests[key(model="iris", version="1.0.0", protocol="v1", status="200")] == 3.0
    logged = [r for r in caplog.records if r.name == "modelhost.serving.observers"]
    assert len(logged) == 1, logged
    assert logged[0].levelno == logging.ERROR and "'boom'" in logged[0].getMessage()
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is RuntimeError


async def test_observers_run_after_the_answer_is_sent(iris_client: Client) -> None:
    events: list[tuple[str, ...]] = []

    class Order:
        name = "order"
        wants_data = False

        def observe(self, observation: Observation) -> None:
            events.append(("observe",))

    app = create_app(iris_client.registry, options=ServerOptions(pool=QUIET),
                     keys=iris_client.keys, audit=iris_client.audit, observers=[Order()],
                     today=lambda: TODAY)
    body = orjson.dumps({"inputs": records(1)})
    path = "/v1/models/iris/predict"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1234), "server": ("test", 80)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        events.append(("send", message["type"]))

    async with app.running():
        await app(scope, receive, send)
    assert events == [("send", "http.response.start"), ("send", "http.response.body"),
                      ("observe",)]
    assert sent[0]["status"] == 200
    assert orjson.loads(sent[1]["body"])["version"] == "1.0.0"


async def test_metrics_count_per_version_as_an_observer(iris_client: Client) -> None:
    bad = bad_records(1)
    async with serve_observed(iris_client, []) as (_, http):
        for _ in range(2):
            assert (await http.post("/v1/models/iris/predict",
                                    json={"inputs": records(1)})).status_code == 200
        pinned = await http.post("/v1/models/iris/versions/1.0.1/predict",
                                 json={"inputs": records(1)})
        assert pinned.status_code == 200, pinned.text
        invalid = await http.post("/v1/models/iris/predict", json={"inputs": bad})
        assert invalid.status_code == 422, invalid.text
        text = (await http.get("/metrics")).text
    requests = samples(text, "modelhost_requests_total")
    assert requests == {
        key(model="iris", version="1.0.0", protocol="v1", status="200"): 2.0,
        key(model="iris", version="1.0.1", protocol="v1", status="200"): 1.0,
        key(model="iris", version="1.0.0", protocol="v1", status="422"): 1.0}
    assert samples(text, "modelhost_errors_total") == {
        key(model="iris", version="1.0.0", code="invalid_input"): 1.0}


async def test_a_pinned_model_registered_since_the_last_read_is_named(
        iris_client: Client) -> None:
    """The routing table has not seen the model yet (the watcher is quiet), but a version
    was chosen for the request: it is a real model, and the observers are told so."""
    rec = Recorder()
    async with serve_observed(iris_client, [rec]) as (app, http):
        iris_client.registry.register(iris_model(), name="fresh",
                                      input_example=iris_example())
        assert not app.server.knows("fresh")
        response = await http.post("/v1/models/fresh/versions/1.0.0/predict",
                                   json={"inputs": records(2)})
        assert response.status_code == 200, response.text
    (seen,) = rec.seen
    assert (seen.model, seen.version, seen.arm, seen.rows) == ("fresh", "1.0.0", None, 2)
