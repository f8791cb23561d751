"""``GET /v1/models/{name}/monitoring/drift`` through the real app: live traffic profiled by
the worker and compared to the version's reference (§3.8), the roles that may read it,
refusals in the §3.6 shape, a version without a reference, and a server whose own live
profiles are off."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.conftest import TODAY, with_iris
from tests.fixtures_models import iris, iris_model

from modelhost import Client
from modelhost.monitoring.profiles import LiveProfiles
from modelhost.serving import (
    ModelhostApp,
    MonitorOptions,
    PoolOptions,
    ServerOptions,
    create_app,
)
from modelhost.stats.profile import Reference

pytestmark = pytest.mark.anyio

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SHIFTED = {"sepal_width", "petal_length"}
FAST = MonitorOptions(flush_s=0.05)  # the flusher writes the windows every 50 ms
AT_SHUTDOWN = MonitorOptions(flush_s=3600.0)  # only when the app stops
DEADLINE_S = 10.0


@asynccontextmanager
async def drift_app(client: Client, monitor: MonitorOptions = FAST, *, profiles: bool = True,
                    **options: Any) -> AsyncIterator[tuple[ModelhostApp, httpx.AsyncClient]]:
    """The app as ``modelhost serve`` builds it (with the profile store unless told)."""
    app = create_app(client.registry, options=ServerOptions(
        pool=PoolOptions(reload_interval_s=3600.0), monitor=monitor, **options),
        keys=client.keys, audit=client.audit, predictions=client.predictions,
        profiles=client.profiles if profiles else None, today=lambda: TODAY)
    async with app.running(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                base_url="http://test") as http:
        yield app, http


@pytest.fixture
def drift_client(client: Client) -> Client:
    """iris 1.0.0 (production) with the reference profile of its training inputs, and
    1.0.1 without one; on SQLite, then on PostgreSQL (the windows' upserts and times)."""
    X, y = iris()
    with_iris(client).registry.attach_reference("iris", "1.0.0", X.assign(target=y),
                                                source="file iris.csv")
    return client


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(sepal_width=frame["sepal_width"] + 2.0,
                        petal_length=frame["petal_length"] + 4.0)


async def send(http: httpx.AsyncClient, frame: pd.DataFrame, *, requests: int,
               path: str = "/v1/models/iris/predict", **headers: str) -> None:
    """``frame`` in ``requests`` requests of about equal size, all answered 200."""
    for i in range(requests):
        part = frame.iloc[i::requests]
        response = await http.post(path, json={"inputs": part.to_dict(orient="records")},
                                   headers=headers)
        assert response.status_code == 200, response.text


async def drift_once(http: httpx.AsyncClient, query: str = "", **headers: str
                     ) -> dict[str, Any]:
    response = await http.get(f"/v1/models/iris/monitoring/drift{query}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def drift_when(http: httpx.AsyncClient, requests: int, query: str = "",
                     **headers: str) -> dict[str, Any]:
    """The report, once the flusher has written ``requests`` requests (or the deadline
    passed: then the caller's assertion says what was missing)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        body = await drift_once(http, query, **headers)
        if body["requests"] >= requests or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.02)


def drifted(body: dict[str, Any]) -> set[str]:
    return {f["name"] for f in body["features"] if f["drifted"]}


async def test_shifted_features_drift_in_the_documented_shape(drift_client: Client) -> None:
    X, _ = iris()
    async with drift_app(drift_client) as (_, http):
        await send(http, shifted(X), requests=5)
        body = await drift_when(http, 5)
    # PRODUCT.md §3.8, plus the window's requests and errors and the reference's source.
    assert {"model", "version", "window", "rows", "reference_rows", "dataset_drift",
            "drift_share", "features", "prediction"} <= set(body)
    assert (body["model"], body["version"]) == ("iris", "1.0.0")
    assert (body["requests"], body["errors"], body["rows"]) == (5, 0, 150)
    assert body["reference_rows"] == 150
    assert body["reference"]["source"] == "file iris.csv"
    stored = drift_client.registry.reference("iris", "1.0.0")
    assert stored is not None and body["reference"]["digest"] == stored.digest
    # An hour, widened to whole minutes.
    start, end = (dt.datetime.fromisoformat(body["window"][k]) for k in ("start", "end"))
    assert start.second == end.second == 0 and start.tzinfo is not None
    assert dt.timedelta(minutes=60) <= end - start <= dt.timedelta(minutes=61)
    assert [f["name"] for f in body["features"]] == COLUMNS
    for feature in body["features"]:
        assert {"name", "type", "test", "statistic", "p_value", "threshold",
                "drifted"} <= set(feature)
        assert (feature["type"], feature["test"], feature["threshold"]) == (
            "numeric", "ks", 0.05)
        assert feature["drifted"] == (feature["p_value"] < 0.05)
    assert drifted(body) == SHIFTED
    assert body["dataset_drift"] is True and body["drift_share"] == 0.5
    assert {"test", "statistic", "threshold", "drifted"} <= set(body["prediction"])


async def test_training_traffic_does_not_drift_and_refusals_count_as_errors(
        drift_client: Client) -> None:
    X, _ = iris()
    async with drift_app(drift_client) as (_, http):
        await send(http, X, requests=6)
        refused = await http.post("/v1/models/iris/predict",
                                  json={"inputs": [{"sepal_length": 1.0}]})
        assert refused.status_code == 422
        body = await drift_when(http, 7)
    assert (body["requests"], body["errors"], body["rows"]) == (7, 1, 150)
    assert body["dataset_drift"] is False and body["drift_share"] == 0.0
    assert drifted(body) == set()
    assert all(f["statistic"] == 0.0 for f in body["features"])  # the very same rows
    assert body["prediction"]["drifted"] is False


async def test_every_prediction_route_is_profiled_and_versions_are_apart(
        drift_client: Client) -> None:
    X, _ = iris()
    async with drift_app(drift_client) as (_, http):
        await send(http, shifted(X), requests=2, path="/v1/models/iris/versions/1.0.0/predict")
        await send(http, X, requests=3, path="/v1/models/iris/versions/1.0.1/predict")
        await send(http, X, requests=1, **{"X-Model-Version": "1.0.1"})
        pinned = await drift_when(http, 2, "?version=1.0.0")
        other = await drift_when(http, 4, "?version=1.0.1")
    assert (pinned["requests"], pinned["rows"]) == (2, 150)
    assert drifted(pinned) == SHIFTED
    assert (other["version"], other["requests"]) == ("1.0.1", 4)


async def test_columns_are_profiled_by_name_whatever_the_protocol_and_order(
        drift_client: Client) -> None:
    """Inputs sent in another column order, as columns, by Open Inference and by MLflow's
    protocol reach the profile of the right feature: a mix-up would show as drift on
    the unshifted features."""
    X, _ = iris()
    moved = shifted(X)[list(reversed(COLUMNS))]
    parts = [moved.iloc[i::4] for i in range(4)]
    async with drift_app(drift_client) as (_, http):
        bodies = [
            ("/v1/models/iris/predict", {"inputs": parts[0].to_dict(orient="records")}),
            ("/v1/models/iris/predict", {"inputs": parts[1].to_dict(orient="list")}),
            ("/v2/models/iris/infer", {"inputs": [
                {"name": name, "shape": [len(parts[2]), 1], "datatype": "FP64",
                 "data": parts[2][name].tolist()} for name in parts[2].columns]}),
            ("/v1/models/iris/invocations", {"dataframe_split": {
                "columns": list(parts[3].columns), "data": parts[3].to_numpy().tolist()}}),
        ]
        for path, body in bodies:
            response = await http.post(path, json=body)
            assert response.status_code == 200, (path, response.text)
        report = await drift_when(http, 4)
    assert (report["requests"], report["rows"]) == (4, 150)
    assert all(f["rows"] == 150 for f in report["features"])
    assert drifted(report) == SHIFTED
    unshifted = [f for f in report["features"] if f["name"] not in SHIFTED]
    assert all(f["statistic"] == 0.0 for f in unshifted)  # the training rows themselves


class DatedModel:
    """A python-flavor model (registered by import path) with a datetime input."""

    def predict(self, X: Any) -> Any:
        import numpy as np

        return np.zeros(len(X), dtype=np.int64)


async def test_a_datetime_feature_is_not_profiled(
        drift_client: Client) -> None:
    import numpy as np

    frame = pd.DataFrame({"x": np.linspace(0.0, 10.0, 120),
                          "when": pd.date_range("2026-01-01", periods=120, freq="D")})
    registry = drift_client.registry
    mv = registry.register(f"{__name__}:DatedModel", name="dated", flavor="python",
                           input_example=frame.head(5), reference_data=frame)
    assert mv.signature is not None
    assert [c.type.value for c in mv.signature.columns] == ["double", "datetime"]
    registry.transition("dated", mv.version, "staging")
    registry.transition("dated", mv.version, "production")
    async with drift_app(drift_client) as (_, http):
        response = await http.post("/v1/models/dated/predict", json={"inputs": {
            "x": frame["x"].tolist(), "when": [t.isoformat() for t in frame["when"]]}})
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + DEADLINE_S
        while True:
            got = await http.get("/v1/models/dated/monitoring/drift")
            body = got.json()
            if body["requests"] >= 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
    # Date-times are not profiled (a time stamp always moves), as Evidently.
    assert (body["requests"], body["rows"]) == (1, 120)
    assert [f["name"] for f in body["features"]] == ["x"]
    assert drifted(body) == set()


async def test_a_version_without_reference_answers_with_a_message(
        drift_client: Client) -> None:
    X, _ = iris()
    drift_client.registry.set_alias("iris", "challenger", "1.0.1")
    async with drift_app(drift_client) as (_, http):
        await send(http, X, requests=2, **{"X-Model-Version": "1.0.1"})
        body = await drift_when(http, 2, "?version=challenger&window=30m")
    assert (body["version"], body["requests"], body["errors"]) == ("1.0.1", 2, 0)
    assert body["reference"] is None and body["reference_rows"] is None
    assert body["rows"] == 0 and body["features"] == [] and body["prediction"] is None
    assert body["dataset_drift"] is None and body["drift_share"] is None
    assert body["message"] == ("version 1.0.1 has no reference profile: attach one with "
                               "'modelhost monitor reference iris 1.0.1 --data FILE'")


async def test_without_traffic_nothing_drifts(drift_client: Client) -> None:
    async with drift_app(drift_client) as (_, http):
        body = await drift_once(http, "?window=7d")
    assert (body["requests"], body["errors"], body["rows"]) == (0, 0, 0)
    assert body["dataset_drift"] is False and body["drift_share"] == 0.0
    assert all(f["statistic"] is None and not f["drifted"] for f in body["features"])
    assert body["reference_rows"] == 150


async def test_windows_are_written_at_shutdown_and_read_after_a_restart(
        drift_client: Client) -> None:
    X, _ = iris()
    async with drift_app(drift_client, AT_SHUTDOWN) as (_, http):
        await send(http, shifted(X), requests=3)
        assert (await drift_once(http))["requests"] == 0  # not flushed yet
    async with drift_app(drift_client, AT_SHUTDOWN) as (_, http):
        body = await drift_once(http)
    assert (body["requests"], body["rows"]) == (3, 150)
    assert drifted(body) == SHIFTED


async def test_traffic_before_a_new_reference_counts_as_requests_only(
        drift_client: Client) -> None:
    """Windows laid out on the replaced reference keep their requests and errors, but
    are not compared with the new one."""
    X, _ = iris()
    async with drift_app(drift_client, AT_SHUTDOWN) as (_, http):
        await send(http, shifted(X), requests=3)
    drift_client.registry.attach_reference("iris", "1.0.0", X.iloc[::2], source="half")
    async with drift_app(drift_client) as (_, http):
        await send(http, X.iloc[::2], requests=2)
        body = await drift_when(http, 5)
    assert (body["requests"], body["rows"], body["reference_rows"]) == (5, 75, 75)
    assert body["reference"]["source"] == "half"
    assert all(f["rows"] == 75 for f in body["features"])
    assert drifted(body) == set() and body["dataset_drift"] is False


async def test_with_live_profiles_off_the_stored_windows_still_answer(
        drift_client: Client) -> None:
    """MonitorOptions(profiles=False): this server counts nothing of its own, but the
    route still reports what other workers and replicas wrote."""
    X, _ = iris()
    async with drift_app(drift_client, AT_SHUTDOWN) as (_, http):  # another replica
        await send(http, shifted(X), requests=3)
    off = MonitorOptions(flush_s=0.05, profiles=False)
    async with drift_app(drift_client, off) as (_, http):
        await send(http, X, requests=4)
        body = await drift_once(http)
    assert (body["requests"], body["rows"]) == (3, 150)
    assert drifted(body) == SHIFTED
    async with drift_app(drift_client, AT_SHUTDOWN) as (_, http):
        # Its stop flushed whatever it had: none of its own requests were counted.
        assert (await drift_once(http))["requests"] == 3


@dataclass
class Answered:
    """What the observers see of one answered prediction request."""

    model: str
    version: str
    rows: int
    inputs: Any
    predictions: Any
    status: int = 200
    latency_s: float = 0.002
    at: float = 0.0  # when answered
    arm: Any = None
    request_id: str = ""
    probabilities: Any = None


def write_old_traffic(client: Client, frame: pd.DataFrame, *, days_ago: float) -> None:
    """One request of ``frame``, counted and written as a worker did ``days_ago``."""

    def reference(model: str, version: str) -> Reference | None:
        stored = client.registry.reference(model, version)
        return Reference.from_dict(stored.profile) if stored is not None else None

    at = time.time() - days_ago * 86400
    live = LiveProfiles(client.profiles, references=reference, clock=lambda: at)
    inputs = frame[COLUMNS]
    live.observe(Answered("iris", "1.0.0", len(inputs), inputs, iris_model().predict(inputs),
                          at=at))
    assert live.flush() == 1


def stored_windows(client: Client, width_s: int) -> list[dt.datetime]:
    return [start for start, _, _ in client.profiles.windows(
        "iris", "1.0.0", width_s=width_s, start=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
        end=dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))]


async def test_each_worker_prunes_windows_past_the_retention(drift_client: Client) -> None:
    """Minute windows are kept two days, hour windows ``profile_retention_days``; a week's
    report then reads the older traffic from its hour windows."""
    X, _ = iris()
    write_old_traffic(drift_client, shifted(X), days_ago=3)
    write_old_traffic(drift_client, X, days_ago=40)
    assert (len(stored_windows(drift_client, 60)), len(stored_windows(drift_client, 3600))) \
        == (2, 2)
    pruning = MonitorOptions(flush_s=0.05, prune_every_s=0.1, profile_retention_days=30)
    async with drift_app(drift_client, pruning) as (_, http):
        deadline = time.monotonic() + DEADLINE_S
        while stored_windows(drift_client, 60) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        week = await drift_once(http, "?window=7d")
        year = await drift_once(http, "?window=52w")
    assert stored_windows(drift_client, 60) == []
    [kept] = stored_windows(drift_client, 3600)
    assert dt.timedelta(days=2) < dt.datetime.now(dt.timezone.utc) - kept < dt.timedelta(days=4)
    assert (week["requests"], week["rows"]) == (1, 150)
    assert drifted(week) == SHIFTED
    assert year["requests"] == 1  # the 40 days old traffic is gone


async def test_without_a_profile_store_there_is_no_drift_to_report(
        drift_client: Client) -> None:
    async with drift_app(drift_client, profiles=False) as (_, http):
        response = await http.get("/v1/models/iris/monitoring/drift")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "live profiles are off on this server" in error["message"]


@pytest.mark.parametrize(("path", "status", "fragment"), [
    ("/v1/models/nope/monitoring/drift", 404, "model 'nope' not found"),
    ("/v1/models/iris/monitoring/drift?version=9.9.9", 404, "no version or alias '9.9.9'"),
    ("/v1/models/iris/monitoring/drift?window=soon", 422, "'soon' is not a duration"),
    ("/v1/models/iris/monitoring/drift?window=0h", 422, "'0h' is not a duration"),
    ("/v1/models/iris/monitoring/drift?window=999999w", 422, "longer than 100 years"),
])
async def test_refusals_in_the_error_shape(drift_client: Client, path: str, status: int,
                                           fragment: str) -> None:
    async with drift_app(drift_client) as (_, http):
        response = await http.get(path)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert fragment in body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


async def test_a_model_without_production_version_needs_a_version(
        drift_client: Client) -> None:
    from tests.fixtures_models import iris_example

    drift_client.registry.register(iris_model(), name="fresh", input_example=iris_example())
    async with drift_app(drift_client) as (_, http):
        response = await http.get("/v1/models/fresh/monitoring/drift")
        pinned = await http.get("/v1/models/fresh/monitoring/drift?version=latest")
    assert response.status_code == 404, response.text
    assert "@production" in response.json()["error"]["message"]
    assert pinned.status_code == 200 and pinned.json()["version"] == "1.0.0"


async def test_viewers_read_drift_and_predictors_may_not(drift_client: Client) -> None:
    X, _ = iris()
    keys = drift_client.keys
    viewer = keys.create(name="v", role="viewer").secret
    deployer = keys.create(name="d", role="deployer").secret
    admin = keys.create(name="a", role="admin").secret
    predictor = keys.create(name="p", role="predictor").secret
    async with drift_app(drift_client, auth=True) as (_, http):
        await send(http, shifted(X), requests=2, authorization=f"Bearer {predictor}")
        body = await drift_when(http, 2, authorization=f"Bearer {viewer}")
        assert drifted(body) == SHIFTED
        for secret in (deployer, admin):
            again = await drift_once(http, authorization=f"Bearer {secret}")
            assert again["requests"] == 2
        refused = await http.get("/v1/models/iris/monitoring/drift",
                                 headers={"authorization": f"Bearer {predictor}"})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
        assert (await http.get("/v1/models/iris/monitoring/drift")).status_code == 401
        wrong = await http.get("/v1/models/iris/monitoring/drift",
                               headers={"authorization": "Bearer mh_nope"})
        assert wrong.status_code == 401
        unknown = await http.get("/v1/models/nope/monitoring/drift",
                                 headers={"authorization": f"Bearer {viewer}"})
        assert unknown.status_code == 404
