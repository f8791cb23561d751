"""The online store (SQLite and a real Redis), materialization and lookups.

Materialized values are checked against the offline store's own point-in-time answer at
the window's end: what serving reads is what a training frame would have seen. Reruns,
incremental runs and a run interrupted halfway all end in the same store as one run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from modelhost.errors import FileNotFoundInputError, InvalidInputError
from modelhost.features import parse_repo, point_in_time_join
from modelhost.features.definitions import FeatureRepo
from modelhost.features.lookup import FeatureMissingError, OnlineLookup
from modelhost.features.materialize import materialize
from modelhost.features.online import (
    Freshness,
    OnlineStore,
    Stored,
    entity_key,
    open_online_store,
)
from modelhost.features.online_redis import RedisOnlineStore
from modelhost.features.online_sqlite import SQLiteOnlineStore
from tests.features.test_offline import generated as offline_generated
from tests.services import require_redis

T0 = pd.Timestamp("2026-11-01", tz="UTC")

DEFINITIONS = """
entities:
  - {name: customer, join_keys: [customer_id]}
  - {name: region, join_keys: [region]}
feature_views:
  - name: stats
    entities: [customer, region]
    ttl: 3d
    schema: [{name: orders, dtype: long}, {name: spend, dtype: double, default: 0.0}]
    source: {path: PATH, timestamp_field: event_timestamp, created_timestamp_column: created}
    on_missing: default
  - name: profile
    entities: [customer]
    schema: [{name: tier, dtype: string}]
    source: {path: PROFILE, timestamp_field: event_timestamp}
feature_services:
  - {name: churn, features: [stats, profile:tier]}
"""


def generated(seed: int, rows: int = 3000, keys: int = 60) -> pd.DataFrame:
    """Rows in random order on an hourly grid (times repeat), with late corrections (a
    later ``created`` for the same time) and some missing values: the offline tests'."""
    _, source = offline_generated(seed, rows=rows, keys=keys)
    return source


@pytest.fixture
def sources(tmp_path: Path) -> tuple[FeatureRepo, pd.DataFrame, pd.DataFrame]:
    stats = generated(7)
    stats.to_parquet(tmp_path / "stats.parquet")
    profile = pd.DataFrame({"customer_id": [1, 2, 1],
                            "event_timestamp": [T0, T0, T0 + pd.Timedelta(days=2)],
                            "tier": ["gold", "silver", "platinum"]})
    profile.to_csv(tmp_path / "profile.csv", index=False)
    repo = parse_repo(DEFINITIONS.replace("PATH", str(tmp_path / "stats.parquet"))
                      .replace("PROFILE", str(tmp_path / "profile.csv")))
    return repo, stats, profile


@pytest.fixture(scope="module")
def redis_url() -> str:
    return require_redis()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        made: OnlineStore = SQLiteOnlineStore(tmp_path / "online.db")
        yield made
        made.close()
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"mhtest:{uuid.uuid4().hex}:"
    made = RedisOnlineStore(url, prefix=prefix)
    try:
        yield made
    finally:
        made.close()
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def contents(store: OnlineStore, repo: FeatureRepo, frame: pd.DataFrame, view: str
             ) -> dict[str, Stored | None]:
    keys = sorted({entity_key(k) for k in
                   frame[list(repo.join_keys(repo.views[view]))].itertuples(index=False)})
    return dict(zip(keys, store.read([(view, k) for k in keys]), strict=True))


# --- the store --------------------------------------------------------------------------


def test_a_write_never_replaces_a_newer_value(store: OnlineStore) -> None:
    store.write("v", [("[1]", 200.0, b'{"x":2}'), ("[2]", 50.0, b'{"x":5}')])
    store.write("v", [("[1]", 100.0, b'{"x":1}'), ("[2]", 50.0, b'{"x":6}')])
    assert store.read([("v", "[1]"), ("v", "[2]"), ("v", "[3]"), ("w", "[1]")]) == [
        (200.0, b'{"x":2}'), (50.0, b'{"x":6}'), None, None]  # same time: the later write
    assert store.read([]) == []


def test_reads_keep_the_order_asked_across_views_in_one_call(store: OnlineStore) -> None:
    rows = [(entity_key([i]), float(i), f'{{"i":{i}}}'.encode()) for i in range(1500)]
    store.write("a", rows)
    store.write("b", rows[:10])
    asked = [("b" if i % 7 == 0 else "a", entity_key([i])) for i in range(1499, -1, -3)]
    found = store.read(asked)
    for (view, key), got in zip(asked, found, strict=True):
        i = int(key[1:-1])
        assert got == (None if view == "b" and i >= 10 else (float(i), f'{{"i":{i}}}'.encode()))


def test_the_async_read_answers_as_the_sync_one(store: OnlineStore) -> None:
    store.write("v", [("[1]", 1.5, b'{"x":1}')])

    async def read() -> list[Stored | None]:
        try:
            return await store.aread([("v", "[1]"), ("v", "[9]")])
        finally:
            await store.aclose()

    assert asyncio.run(read()) == [(1.5, b'{"x":1}'), None]


def test_freshness_is_kept_per_view(store: OnlineStore) -> None:
    at = dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc)
    store.record(Freshness("v", at, at - dt.timedelta(hours=1), 3, at))
    store.record(Freshness("w", at, None, 0, at))
    store.record(Freshness("v", at + dt.timedelta(days=1), at, 5, at))
    found = store.freshness()
    assert found["v"] == Freshness("v", at + dt.timedelta(days=1), at, 5, at)
    assert found["w"].latest_event is None


def test_entity_keys_are_one_key_whatever_the_number_type() -> None:
    assert entity_key([np.int64(42)]) == entity_key([42.0]) == entity_key([42]) == "[42]"
    assert entity_key(["eu", 7]) == '["eu",7]'
    assert entity_key([1.5]) == "[1.5]"
    with pytest.raises(InvalidInputError, match="string or a number"):
        entity_key([[1]])


def test_the_store_is_chosen_by_its_url(tmp_path: Path, redis_url: str) -> None:
    assert isinstance(open_online_store(None, home=tmp_path), SQLiteOnlineStore)
    assert (tmp_path / "features-online.db").exists()
    assert isinstance(open_online_store(f"sqlite:///{tmp_path}/o.db", home=tmp_path),
                      SQLiteOnlineStore)
    assert isinstance(open_online_store(redis_url, home=tmp_path), RedisOnlineStore)
    with pytest.raises(InvalidInputError, match="redis:// URL"):
        open_online_store("mysql://x/y", home=tmp_path)


# --- materialization --------------------------------------------------------------------


def expected_at(repo: FeatureRepo, stats: pd.DataFrame, end: pd.Timestamp
                ) -> dict[str, tuple[float, dict[str, Any]]]:
    """The offline store's answer at ``end`` for every key, with no TTL: what a
    training frame would see for an entity whose label is at ``end``."""
    keys = stats[["customer_id", "region"]].drop_duplicates().reset_index(drop=True)
    entity = keys.assign(event_timestamp=end)
    joined = point_in_time_join(entity, stats.assign(seen=stats["event_timestamp"]),
                                join_keys=["customer_id", "region"],
                                features=["orders", "spend", "seen"],
                                created_column="created")
    out = {}
    for row in joined.itertuples(index=False):
        if pd.isna(row.seen):
            continue
        spend = None if pd.isna(row.spend) else row.spend
        out[entity_key([row.customer_id, row.region])] = (
            row.seen.timestamp(), {"orders": int(row.orders), "spend": spend})
    return out


def decoded(found: dict[str, Stored | None]) -> dict[str, tuple[float, dict[str, Any]]]:
    import orjson

    return {k: (v[0], orjson.loads(v[1])) for k, v in found.items() if v is not None}


def test_materialized_values_are_the_offline_answer_at_the_end(
        store: OnlineStore, sources: tuple[FeatureRepo, pd.DataFrame, pd.DataFrame]) -> None:
    repo, stats, _ = sources
    end = T0 + pd.Timedelta(days=6, hours=5)
    seen: list[tuple[str, int, int]] = []
    done = materialize(repo, store, end=end.to_pydatetime(),
                       progress=lambda v, n, total: seen.append((v, n, total)))
    assert [m.view for m in done] == ["stats", "profile"]
    expected = expected_at(repo, stats, end)
    assert decoded(contents(store, repo, stats, "stats")) == expected
    assert done[0].keys == len(expected)
    assert done[0].source_rows == int((stats["event_timestamp"] <= end).sum())
    assert seen[0] == ("stats", 0, len(expected)) and seen[-1][1] == seen[-1][2]
    fresh = store.freshness()["stats"]
    assert fresh.materialized_until == end.to_pydatetime()
    assert fresh.latest_event == stats.loc[stats["event_timestamp"] <= end,
                                           "event_timestamp"].max().to_pydatetime()
    assert json.loads(store.read([("profile", "[1]")])[0][1]) == {"tier": "platinum"}  # type: ignore[index]


def test_incremental_runs_and_reruns_end_as_one_run(
        store: OnlineStore, sources: tuple[FeatureRepo, pd.DataFrame, pd.DataFrame],
        tmp_path: Path) -> None:
    repo, stats, _ = sources
    cuts = [T0 + pd.Timedelta(days=d) for d in (2, 5, 8, 11)]
    for cut in cuts:  # each run starts where the previous ended
        (m, _) = materialize(repo, store, end=cut.to_pydatetime())
        assert m.start == (None if cut == cuts[0] else
                           cuts[cuts.index(cut) - 1].to_pydatetime())
    materialize(repo, store, end=cuts[-1].to_pydatetime())  # nothing new: nothing changes
    materialize(repo, store, start=T0.to_pydatetime(), end=cuts[-1].to_pydatetime())
    once = SQLiteOnlineStore(tmp_path / "once.db")
    materialize(repo, once, end=cuts[-1].to_pydatetime())
    assert decoded(contents(store, repo, stats, "stats")) == decoded(
        contents(once, repo, stats, "stats"))
    assert decoded(contents(store, repo, stats, "stats")) == expected_at(repo, stats, cuts[-1])


class StoppedError(Exception):
    pass


class FailingAfter(OnlineStore):
    """A store that stops (as a killed process would) after some writes."""

    def __init__(self, inner: OnlineStore, writes: int) -> None:
        self.inner, self.left, self.where = inner, writes, inner.where

    def write(self, view: str, rows: Sequence[tuple[str, float, bytes]]) -> None:
        if self.left == 0:
            raise StoppedError
        self.left -= 1
        self.inner.write(view, rows)

    def read(self, lookups: Sequence[tuple[str, str]]) -> list[Stored | None]:
        return self.inner.read(lookups)

    def record(self, freshness: Freshness) -> None:
        self.inner.record(freshness)

    def freshness(self) -> dict[str, Freshness]:
        return self.inner.freshness()


def test_a_run_interrupted_halfway_is_completed_by_the_next(
        store: OnlineStore, sources: tuple[FeatureRepo, pd.DataFrame, pd.DataFrame],
        monkeypatch: pytest.MonkeyPatch) -> None:
    repo, stats, _ = sources
    monkeypatch.setattr("modelhost.features.materialize.CHUNK_ROWS", 17)
    first = T0 + pd.Timedelta(days=3)
    materialize(repo, store, views=["stats"], end=first.to_pydatetime())
    end = T0 + pd.Timedelta(days=9)
    with pytest.raises(StoppedError):
        materialize(repo, FailingAfter(store, writes=2), views=["stats"],
                    end=end.to_pydatetime())
    # Half written, and the view's freshness still says where the last complete run ended.
    assert store.freshness()["stats"].materialized_until == first.to_pydatetime()
    assert decoded(contents(store, repo, stats, "stats")) != expected_at(repo, stats, end)
    (m,) = materialize(repo, store, views=["stats"], end=end.to_pydatetime())
    assert m.start == first.to_pydatetime()  # the same window again
    assert decoded(contents(store, repo, stats, "stats")) == expected_at(repo, stats, end)


def test_bad_materializations_are_refused_and_change_nothing(
        store: OnlineStore, sources: tuple[FeatureRepo, pd.DataFrame, pd.DataFrame],
        tmp_path: Path) -> None:
    repo, stats, _ = sources
    end = (T0 + pd.Timedelta(days=3)).to_pydatetime()
    with pytest.raises(InvalidInputError, match=r"start .* is not before end"):
        materialize(repo, store, start=end, end=end)
    with pytest.raises(InvalidInputError, match="no feature view 'nope'"):
        materialize(repo, store, views=["nope"], end=end)
    stats.drop(columns=["event_timestamp"]).to_parquet(tmp_path / "stats.parquet")
    with pytest.raises(InvalidInputError, match=r"'stats': its source has no column.*"
                                                r"'event_timestamp'"):
        materialize(repo, store, views=["stats"], end=end)
    (tmp_path / "stats.parquet").unlink()
    with pytest.raises(FileNotFoundInputError):
        materialize(repo, store, views=["stats"], end=end)
    assert store.freshness() == {}


# --- lookups ----------------------------------------------------------------------------


def test_lookups_mark_missing_and_stale_values_and_follow_each_views_policy(
        store: OnlineStore, sources: tuple[FeatureRepo, pd.DataFrame, pd.DataFrame]) -> None:
    repo, stats, _ = sources
    end = T0 + pd.Timedelta(days=10)
    materialize(repo, store, end=end.to_pydatetime())
    lookup = OnlineLookup(repo, "churn")
    assert lookup.entity_columns == ["customer_id", "region"]
    assert lookup.names == ["orders", "spend", "tier"]
    expected = expected_at(repo, stats, end)
    known = next(iter(expected))
    cid, region = json.loads(known)
    entities = [{"customer_id": cid, "region": region}, {"customer_id": 1, "region": "eu"},
                {"customer_id": 999, "region": "eu"}]
    soon = expected[known][0] + 3600
    rows = lookup.read(store, entities, now=dt.datetime.fromtimestamp(soon, dt.timezone.utc))
    assert rows[0].values["orders"] == expected[known][1]["orders"]
    assert rows[0].stale == [] and rows[0].missing == (["profile:tier"] if cid not in (1, 2)
                                                        else [])
    assert rows[2].missing == ["stats:orders", "stats:spend", "profile:tier"]
    assert rows[2].values == {"orders": None, "spend": 0.0, "tier": None}  # the defaults
    # Four days on, the stats (TTL 3 days) are stale: their defaults are used.
    later = dt.datetime.fromtimestamp(soon + 4 * 86400, dt.timezone.utc)
    stale = lookup.read(store, entities[:1], now=later)[0]
    assert stale.stale == ["stats:orders", "stats:spend"]
    assert (stale.values["orders"], stale.values["spend"]) == (None, 0.0)
    # stats says default: nothing is refused; profile says reject (the default policy).
    with pytest.raises(FeatureMissingError, match=r"row 1: the feature profile:tier has no "
                                                  r"value for customer_id=999, region=eu"):
        lookup.enforce(rows[1:], entities[1:])
    lookup.enforce(rows[1:2], entities[1:2])
    with pytest.raises(InvalidInputError, match="row 0: the join key 'region' is missing"):
        lookup.lookups([{"customer_id": 1}])
