"""``POST /v1/feedback`` through the real app: a label for a prediction just answered
(before the log's flush), per-item reports, refusals in the §3.6 shape that store nothing,
the predictor role, and the log written at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from tests.conftest import TODAY
from tests.serving.conftest import records

from modelhost import Client
from modelhost.serving import (
    ModelhostApp,
    MonitorOptions,
    PoolOptions,
    ServerOptions,
    create_app,
)

pytestmark = pytest.mark.anyio

# Only the flushes that feedback and shutdown make; unknown ids are waited for 0.2 s.
SLOW_FLUSH = MonitorOptions(flush_s=3600.0, feedback_wait_s=0.2)


@asynccontextmanager
async def logged(client: Client, monitor: MonitorOptions = SLOW_FLUSH, **options: Any,
                 ) -> AsyncIterator[tuple[ModelhostApp, httpx.AsyncClient]]:
    app = create_app(client.registry, options=ServerOptions(
        pool=PoolOptions(reload_interval_s=3600.0), monitor=monitor, **options),
        keys=client.keys, audit=client.audit, predictions=client.predictions,
        today=lambda: TODAY)
    async with app.running(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                base_url="http://test") as http:
        yield app, http


async def predict(http: httpx.AsyncClient, rows: int = 1, **headers: str) -> tuple[str, list[Any]]:
    response = await http.post("/v1/models/iris/predict", json={"inputs": records(rows)},
                               headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"], response.json()["predictions"]


async def test_a_label_for_a_prediction_just_answered_is_joined(iris_client: Client) -> None:
    async with logged(iris_client) as (_, http):
        rid, predictions = await predict(http, rows=2)
        assert iris_client.predictions.find([rid]) == {}  # not flushed yet
        response = await http.post("/v1/feedback",
                                   json={"request_id": rid, "label": [2, predictions[1]]})
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": 1}
    logged_prediction = iris_client.predictions.find([rid])[rid]
    assert logged_prediction.version == "1.0.0" and logged_prediction.rows == 2
    assert logged_prediction.outputs["predictions"] == predictions
    assert logged_prediction.inputs["columns"] == list(records(1)[0])
    assert iris_client.predictions.feedback([rid])[rid].label == [2, predictions[1]]


async def test_items_are_reported_one_by_one(iris_client: Client) -> None:
    async with logged(iris_client) as (_, http):
        first, _ = await predict(http)
        second, _ = await predict(http, **{"X-Request-Id": "order-17"})
        assert second == "order-17"
        response = await http.post("/v1/feedback", json={"items": [
            {"request_id": first, "label": 1}, {"request_id": "never-seen", "label": 1},
            {"request_id": "order-17", "label": "setosa"}, "not an object",
            {"request_id": "order-17", "label": 0}]})
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["accepted"] == 2
        assert [(r["index"], r["request_id"], r["code"]) for r in body["rejected"]] == [
            (1, "never-seen", "not_found"), (3, None, "invalid_input")]
    stored = iris_client.predictions.feedback([first, "order-17"])
    assert {k: v.label for k, v in stored.items()} == {first: [1], "order-17": [0]}


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"request_id": "never-seen", "label": 1}, 404,
     "request id 'never-seen' is not in the prediction log"),
    ({"request_id": "FIRST", "label": "setosa"}, 422,
     "expected a number like the model's predictions"),
    ({"items": [{"request_id": "never-seen", "label": 1}]}, 404,
     "no label was accepted; item 0: request id 'never-seen'"),
    ({"items": [{"request_id": "FIRST", "label": [1, 2]}, {"label": 1}]}, 422,
     "no label was accepted; item 0: label for request"),
    ({"items": []}, 422, "'items' is empty"),
    ({"label": 1}, 422, 'send {"request_id": ..., "label": ...} or {"items": [...]}'),
    ({"request_id": "FIRST", "label": 1, "items": []}, 422,
     "send either request_id and label, or items"),
    ({"request_id": "FIRST", "label": 1, "extra": True}, 422, "extra"),
])
async def test_refusals_store_nothing(iris_client: Client, body: dict[str, Any], status: int,
                                      message: str) -> None:
    async with logged(iris_client) as (_, http):
        rid, _ = await predict(http)
        sent = _replace(body, "FIRST", rid)
        response = await http.post("/v1/feedback", json=sent)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert message in error["message"], error
        assert error["request_id"] == response.headers["x-request-id"]
        assert "Traceback" not in response.text
    assert iris_client.predictions.feedback([rid, "never-seen"]) == {}


async def test_not_json_is_a_400(iris_client: Client) -> None:
    async with logged(iris_client) as (_, http):
        response = await http.post("/v1/feedback", content=b"{nope",
                                   headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text


async def test_without_a_prediction_log_feedback_says_so(iris_client: Client) -> None:
    async with logged(iris_client, monitor=MonitorOptions(prediction_log=False)) as (_, http):
        rid, _ = await predict(http)
        response = await http.post("/v1/feedback", json={"request_id": rid, "label": 1})
        assert response.status_code == 404
        assert "MODELHOST_PREDICTION_LOG=false" in response.json()["error"]["message"]
    assert iris_client.predictions.find([rid]) == {}


async def test_predictors_send_feedback_and_viewers_may_not(iris_client: Client) -> None:
    predictor = iris_client.keys.create(name="p", role="predictor").secret
    viewer = iris_client.keys.create(name="v", role="viewer").secret
    async with logged(iris_client, auth=True) as (_, http):
        rid, _ = await predict(http, authorization=f"Bearer {predictor}")
        body = {"request_id": rid, "label": 1}
        assert (await http.post("/v1/feedback", json=body)).status_code == 401
        refused = await http.post("/v1/feedback", json=body,
                                  headers={"authorization": f"Bearer {viewer}"})
        assert refused.status_code == 403
        assert iris_client.predictions.feedback([rid]) == {}
        accepted = await http.post("/v1/feedback", json=body,
                                   headers={"authorization": f"Bearer {predictor}"})
        assert accepted.status_code == 202, accepted.text


async def test_a_key_limited_to_models_labels_only_their_requests(
        iris_client: Client) -> None:
    from tests.fixtures_models import iris_example, iris_model

    registry = iris_client.registry
    registry.register(iris_model(), name="other", input_example=iris_example())
    registry.transition("other", "1.0.0", "staging")
    registry.transition("other", "1.0.0", "production")
    admin = iris_client.keys.create(name="a", role="predictor").secret
    iris_only = iris_client.keys.create(name="i", role="predictor", models=["iris"]).secret
    async with logged(iris_client, auth=True) as (_, http):
        mine, _ = await predict(http, authorization=f"Bearer {admin}")
        response = await http.post("/v1/models/other/predict", json={"inputs": records(1)},
                                   headers={"authorization": f"Bearer {admin}"})
        theirs = response.headers["x-request-id"]
        limited = {"authorization": f"Bearer {iris_only}"}
        refused = await http.post("/v1/feedback", headers=limited,
                                  json={"request_id": theirs, "label": 1})
        assert refused.status_code == 404, refused.text  # as if it were never logged
        assert refused.json()["error"]["message"].startswith(
            f"request id {theirs!r} is not in the prediction log")
        accepted = await http.post("/v1/feedback", headers=limited, json={"items": [
            {"request_id": mine, "label": 1}, {"request_id": theirs, "label": 1}]})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["accepted"] == 1
        assert [r["request_id"] for r in accepted.json()["rejected"]] == [theirs]
    assert set(iris_client.predictions.feedback([mine, theirs])) == {mine}


async def test_the_flusher_writes_in_the_background_and_at_shutdown(
        iris_client: Client) -> None:
    import asyncio

    async with logged(iris_client, monitor=MonitorOptions(flush_s=0.05)) as (_, http):
        rid, _ = await predict(http)
        for _ in range(100):
            if iris_client.predictions.find([rid]):
                break
            await asyncio.sleep(0.05)
        assert rid in iris_client.predictions.find([rid])
    async with logged(iris_client) as (_, http):  # flushes only when it stops
        last, _ = await predict(http)
        assert iris_client.predictions.find([last]) == {}
    assert last in iris_client.predictions.find([last])


def _replace(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return new if value == old else value


async def test_live_performance_from_feedback(iris_client: Client) -> None:
    viewer = iris_client.keys.create(name="v", role="viewer").secret
    predictor = iris_client.keys.create(name="p", role="predictor").secret
    async with logged(iris_client, auth=True) as (_, http):
        sent = {"authorization": f"Bearer {predictor}"}
        answers = [await predict(http, rows=2, **sent) for _ in range(3)]
        labels = [[p[0], 2] for _, p in answers[:2]]  # the second row of each is wrong
        response = await http.post("/v1/feedback", headers=sent, json={"items": [
            {"request_id": rid, "label": label}
            for (rid, _), label in zip(answers, labels, strict=False)]})
        assert response.json() == {"accepted": 2}
        read = {"authorization": f"Bearer {viewer}"}
        response = await http.get("/v1/models/iris/monitoring/performance?window=1h",
                                  headers=read)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model"], body["version"], body["requests"], body["labelled"],
                body["task"]) == ("iris", "1.0.0", 3, 4, "classification")
        predicted = [p for _, ps in answers[:2] for p in ps]
        truth = [x for label in labels for x in label]
        expected = sum(a == b for a, b in zip(predicted, truth, strict=True)) / 4
        assert body["metrics"]["accuracy"] == pytest.approx(expected)
        assert body["metrics"]["roc_auc"] is not None  # the model's class order is known
        assert body["at_registration"] == {} and body["change"] == {}
        everything = await http.get(  # 100 years: from 1970 on
            "/v1/models/iris/monitoring/performance?window=5218w", headers=read)
        assert everything.status_code == 200, everything.text
        assert everything.json()["window"]["start"] == "1970-01-01T00:00:00+00:00"
        assert everything.json()["labelled"] == 4
        pinned = await http.get("/v1/models/iris/monitoring/performance?version=1.0.1",
                                headers=read)
        assert pinned.json()["requests"] == 0 and pinned.json()["task"] is None
        for query, status in (("window=soon", 422), ("window=0h", 422), ("window=999999w", 422),
                              ("version=9.9.9", 404)):
            refused = await http.get(f"/v1/models/iris/monitoring/performance?{query}",
                                     headers=read)
            assert refused.status_code == status, (query, refused.text)
        unknown = await http.get("/v1/models/nope/monitoring/performance", headers=read)
        assert unknown.status_code == 404
        assert (await http.get("/v1/models/iris/monitoring/performance")).status_code == 401


async def test_each_worker_prunes_what_is_past_the_retention(iris_client: Client) -> None:
    import asyncio
    import datetime as dt

    from modelhost._utils import utcnow
    from modelhost.store.monitoring import LogEntry

    store = iris_client.predictions
    store.append([LogEntry(name, "iris", "1.0.0", None, utcnow() - dt.timedelta(days=age),
                           1, "[]", '{"predictions": [0]}')
                  for name, age in (("ancient", 40), ("recent", 2))])
    pruning = MonitorOptions(flush_s=0.05, prune_every_s=0.1)
    async with logged(iris_client, monitor=pruning):
        for _ in range(100):
            if "ancient" not in store.find(["ancient"]):
                break
            await asyncio.sleep(0.05)
    assert set(store.find(["ancient", "recent"])) == {"recent"}
