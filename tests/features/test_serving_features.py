"""A model trained from a feature service's training frame, served from entity keys.

The real app in-process: a version registered with ``feature_service`` gets requests
carrying only join keys; the server looks the features up in the online store (SQLite,
then a real Redis), and its predictions equal the model's own on the features the
offline store gives at the same moment. Missing and stale values follow each view's
policy; bad requests are refused with 422 and change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from sklearn.linear_model import LogisticRegression

from modelhost import Client, Settings
from modelhost.errors import ConflictError, InvalidInputError
from modelhost.features import training_frame
from modelhost.features.sources import read_source
from modelhost.serving import MonitorOptions, PoolOptions, ServerOptions, create_app
from modelhost.serving.observers import Observation
from modelhost.streams import StreamConsumer, StreamOptions, open_sink, open_source
from tests.services import require_redis
from tests.serving.conftest import serve
from tests.streams.test_redis_consumer import (  # noqa: F401 - streams is a fixture
    Streams,
    entries,
    produce,
    run_until,
    streams,
)

pytestmark = pytest.mark.anyio
NOW = pd.Timestamp.now(tz="UTC").floor("s")
FEATURES = ["orders", "spend", "tickets"]

DEFINITIONS = """
entities:
  - {name: customer, join_keys: [customer_id]}
feature_views:
  - name: activity
    entities: [customer]
    schema: [{name: orders, dtype: long}, {name: spend, dtype: double}]
    source: {path: activity.parquet, timestamp_field: event_timestamp}
  - name: support
    entities: [customer]
    ttl: 30d
    schema: [{name: tickets, dtype: long, default: 0}]
    source: {path: support.parquet, timestamp_field: event_timestamp}
    on_missing: default
feature_services:
  - {name: churn, features: [activity, support]}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_sources(folder: Path, customers: int = 40) -> None:
    rng = np.random.default_rng(3)
    n = customers * 5
    pd.DataFrame({
        "customer_id": np.repeat(np.arange(customers), 5),
        "event_timestamp": NOW - pd.to_timedelta(rng.integers(1, 60 * 24, n), unit="min"),
        "orders": rng.integers(0, 30, n), "spend": rng.random(n) * 200,
    }).to_parquet(folder / "activity.parquet")
    # Support tickets for half the customers, some older than the view's 30-day TTL.
    half = customers // 2
    pd.DataFrame({
        "customer_id": np.arange(half),
        "event_timestamp": NOW - pd.to_timedelta(np.where(np.arange(half) % 4 == 0, 40, 2),
                                                 unit="D"),
        "tickets": rng.integers(1, 9, half),
    }).to_parquet(folder / "support.parquet")


@pytest.fixture(params=["sqlite", "redis"])
def client(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.chdir(tmp_path)
    write_sources(tmp_path)
    online = None
    prefix_client = None
    if request.param == "redis":
        online = require_redis().rsplit("/", 1)[0] + "/14"
        prefix_client = redis.Redis.from_url(online)
        prefix_client.flushdb()
    settings = Settings(home=tmp_path / "home", features_online=online)
    with Client(settings) as made:
        made.features.apply(DEFINITIONS)
        made.features.materialize()
        yield made
    if prefix_client is not None:
        prefix_client.flushdb()
        prefix_client.close()


def train(client: Client) -> tuple[Any, pd.DataFrame]:
    """A churn model on the point-in-time training frame of the service."""
    rng = np.random.default_rng(5)
    labels = pd.DataFrame({"customer_id": rng.integers(0, 40, 300),
                           "event_timestamp": NOW - pd.to_timedelta(
                               rng.integers(0, 60 * 24, 300), unit="min")})
    repo = client.features.current().repo
    frame = training_frame(labels, repo, "churn", read_source=read_source)
    frame["tickets"] = frame["tickets"].fillna(0)
    frame = frame.dropna(subset=["orders"])
    X = frame[FEATURES].astype({"orders": "int64", "tickets": "int64"})
    y = (X["orders"] + X["tickets"] * 3 > 20).astype(int)
    model = LogisticRegression(max_iter=500).fit(X, y)
    version = client.registry.register(model, name="churn", input_example=X.head(3),
                                       feature_service="churn")
    client.registry.transition("churn", version.version, "staging")
    client.registry.transition("churn", version.version, "production")
    return model, X


def offline_features(client: Client, customers: list[int]) -> pd.DataFrame:
    repo = client.features.current().repo
    entity = pd.DataFrame({"customer_id": customers, "event_timestamp": NOW})
    frame = training_frame(entity, repo, "churn", read_source=read_source)
    frame["tickets"] = frame["tickets"].fillna(0)
    return frame[FEATURES].astype({"orders": "int64", "tickets": "int64"})


async def test_requests_with_keys_are_scored_on_the_features_of_the_offline_store(
        client: Client) -> None:
    model, _ = train(client)
    version = client.registry.get_version("churn", "@production")
    assert (version.lineage.feature_service, version.lineage.features_version) == ("churn", 1)
    seen: list[Observation] = []

    class Keep:
        wants_data = True

        def observe(self, observation: Observation) -> None:
            seen.append(observation)

    customers = [0, 1, 4, 25, 39]  # 0 and 4: tickets past the TTL; 25, 39: none at all
    expected = offline_features(client, customers)
    async with serve(client, features=client.features, observers=[Keep()]) as (_, http):
        response = await http.post("/v1/models/churn/predict", json={
            "inputs": [{"customer_id": c} for c in customers], "return_features": True})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["predictions"] == model.predict(expected).tolist()
        assert np.allclose(body["probabilities"], model.predict_proba(expected))
        assert body["features"] == expected.to_dict(orient="records")
        assert [f["tickets"] for f in body["features"]][:3] == [0, expected.tickets[1], 0]
        # Columns work as records do; without return_features nothing is echoed.
        columns = await http.post("/v1/models/churn/predict",
                                  json={"inputs": {"customer_id": customers}})
        assert columns.json()["predictions"] == body["predictions"]
        assert "features" not in columns.json()
        # What monitoring sees is the model's inputs: the features.
        assert list(seen[0].inputs.columns) == FEATURES
        assert seen[0].inputs["orders"].tolist() == expected["orders"].tolist()


async def test_missing_features_and_bad_requests_are_refused_naming_what(
        client: Client) -> None:
    train(client)
    async with serve(client, features=client.features) as (_, http):
        async def post(inputs: Any, **extra: Any) -> tuple[int, str]:
            response = await http.post("/v1/models/churn/predict",
                                       json={"inputs": inputs, **extra})
            return response.status_code, response.json().get("error", {}).get("message", "")

        # activity rejects (the default policy): an unknown customer is refused whole.
        code, message = await post([{"customer_id": 1}, {"customer_id": 4040}])
        assert (code, message) == (422, "row 1: the feature activity:orders has no value "
                                         "for customer_id=4040")
        code, message = await post([{"region": "eu"}])
        assert code == 422 and "the join key 'customer_id' is missing" in message
        code, message = await post([{"customer_id": 1, "orders": 3}])
        assert code == 422 and "orders comes from the feature service 'churn'" in message
        code, message = await post([{"customer_id": [1]}])
        assert code == 422 and "an entity key is a string or a number" in message
        code, message = await post([{"customer_id": 1}], return_features="yes")
        assert code == 422 and "return_features" in message
        code, message = await post([[1.0]])
        assert code == 422 and "naming customer_id" in message


def test_binding_is_checked_at_registration(client: Client) -> None:
    _, X = train(client)
    model = LogisticRegression().fit(X[["orders", "spend"]], X["orders"] > 10)
    with pytest.raises(InvalidInputError, match="gives tickets, which the model's "
                                                "signature does not take"):
        client.registry.register(model, name="churn", input_example=X[["orders", "spend"]],
                                 feature_service="churn")
    with pytest.raises(InvalidInputError, match="no feature service 'nope'"):
        client.registry.register(model, name="churn", input_example=X[["orders", "spend"]],
                                 feature_service="nope")
    with pytest.raises(InvalidInputError, match="features_version needs a feature_service"):
        client.registry.register(model, name="churn", input_example=X[["orders", "spend"]],
                                 features_version=1)
    assert [v.version for v in client.registry.list_versions("churn")] == ["1.0.0"]


def test_a_change_that_would_break_a_served_version_is_refused(client: Client) -> None:
    train(client)  # churn 1.0.0, in production, bound to "churn" of version 1
    for changed, what in (
            (DEFINITIONS.replace("features: [activity, support]", "features: [activity]"),
             "changes what it gives"),
            (DEFINITIONS.replace("{name: tickets, dtype: long, default: 0}",
                                 "{name: tickets, dtype: double, default: 0}"),
             "changes what it gives"),
            (DEFINITIONS.replace("  - {name: churn, features: [activity, support]}",
                                 "  - {name: churn2, features: [activity, support]}"),
             "drops it")):
        with pytest.raises(ConflictError, match=f"the feature service 'churn' serves churn "
                                                f"1.0.0 .production., and this change {what}"):
            client.features.apply(changed)
    assert client.features.current().version == 1
    # A new service beside the old one is fine, and so is the change once no staged or
    # production version is bound to the old one.
    both = DEFINITIONS + "  - {name: churn_v2, features: [activity]}\n"
    assert client.features.apply(both).version == 2
    client.registry.transition("churn", "1.0.0", "archived")
    assert client.features.apply(DEFINITIONS.replace(
        "features: [activity, support]", "features: [activity]")).version == 3


async def test_stream_events_carry_keys_as_requests_do(client: Client,
                                                       streams: Streams) -> None:  # noqa: F811
    model, _ = train(client)
    customers = [0, 1, 4, 25]
    expected = offline_features(client, customers)
    await produce(streams, [({"customer_id": c}, str(c)) for c in customers]
                  + [({"customer_id": 4040}, "unknown")])
    app = create_app(client.registry, features=client.features, options=ServerOptions(
        pool=PoolOptions(reload_interval_s=0.2),
        monitor=MonitorOptions(alerts=False, rollouts=False)))
    async with app.running():
        worker = StreamConsumer(
            "churn", open_source(streams.uri("in"), group="g", consumer="c1"),
            open_sink(streams.uri("out")), open_sink(streams.uri("in-dead")),
            app.server.predictor, app.server.observers,
            options=StreamOptions(block_ms=20, retry_pause_s=0.01, write_pause_s=0.01))
        await run_until(worker, streams, results=4, dead=1)
    out = await entries(streams, "out")
    assert [json.loads(e["prediction"]) for e in out] == model.predict(expected).tolist()
    (letter,) = await entries(streams, "in-dead")
    assert "activity:orders has no value for customer_id=4040" in letter["reason"]
