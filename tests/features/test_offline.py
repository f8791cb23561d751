"""Point-in-time training frames, checked against a brute-force reference on generated
data with duplicates, late corrections and out-of-order rows; and the naive join that
leaks the future, shown to differ."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelhost.errors import InvalidInputError
from modelhost.features import parse_repo, point_in_time_join, training_frame
from modelhost.features.definitions import FileSource

T0 = pd.Timestamp("2026-11-01", tz="UTC")


def generated(seed: int, *, rows: int = 400, entities: int = 150,
              keys: int = 12) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Source rows on an hourly grid (so that times repeat), in random order, with a
    written time after each (a late correction is a later write of the same time), and
    entity rows around and between them (some at exactly a source row's time)."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, 10 * 24, rows)
    source = pd.DataFrame({
        "customer_id": rng.integers(0, keys, rows),
        "region": rng.choice(["eu", "us"], rows),
        "event_timestamp": T0 + pd.to_timedelta(hours, unit="h"),
        "created": T0 + pd.to_timedelta(hours * 60 + rng.integers(0, 600, rows), unit="min"),
        "orders": rng.integers(0, 50, rows),
        "spend": np.where(rng.random(rows) < 0.1, np.nan, rng.random(rows) * 100)})
    at = rng.integers(-24 * 60, 11 * 24 * 60, entities)
    exact = rng.random(entities) < 0.2
    at[exact] = hours[rng.integers(0, rows, exact.sum())] * 60
    entity = pd.DataFrame({
        "customer_id": rng.integers(0, keys, entities),
        "region": rng.choice(["eu", "us"], entities),
        "event_timestamp": T0 + pd.to_timedelta(at, unit="min"),
        "label": rng.integers(0, 2, entities)})
    return entity, source.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def brute_force(entity: pd.DataFrame, source: pd.DataFrame, keys: list[str],
                features: list[str], ttl: dt.timedelta | None,
                created: str | None) -> pd.DataFrame:
    """Row by row: the latest source row of the keys at or before the time and within
    the TTL; between rows of one time, the latest written, then the last in order."""
    out = entity.copy()
    values: dict[str, list[Any]] = {f: [] for f in features}
    for _, row in entity.iterrows():
        t = row["event_timestamp"]
        match = source[(source[keys] == row[keys]).all(axis=1)
                       & (source["event_timestamp"] <= t)]
        if ttl is not None:
            match = match[match["event_timestamp"] >= t - ttl]
        if match.empty:
            for f in features:
                values[f].append(None)
            continue
        latest = match[match["event_timestamp"] == match["event_timestamp"].max()]
        if created is not None:
            latest = latest[latest[created] == latest[created].max()]
        chosen = latest.iloc[-1]
        for f in features:
            values[f].append(chosen[f])
    for f in features:
        out[f] = values[f]
    return out


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.astype(object).where(a.notna(), None),
                                  b.astype(object).where(b.notna(), None), check_dtype=False)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("ttl", [None, dt.timedelta(days=1), dt.timedelta(hours=6)])
@pytest.mark.parametrize("created", [None, "created"])
def test_the_join_agrees_with_the_brute_force_reference(seed: int, ttl: dt.timedelta | None,
                                                        created: str | None) -> None:
    entity, source = generated(seed)
    keys = ["customer_id", "region"]
    got = point_in_time_join(entity, source, join_keys=keys, features=["orders", "spend"],
                             created_column=created, ttl=ttl)
    same(got, brute_force(entity, source, keys, ["orders", "spend"], ttl, created))
    assert len(got) == len(entity) and got.index.equals(entity.index)  # nothing dropped
    # Some rows found no value in time (before any, or past the TTL), and stay.
    assert got["orders"].isna().any() and got["orders"].notna().any()


def test_the_naive_latest_value_join_leaks_the_future() -> None:
    entity, source = generated(5)
    keys = ["customer_id", "region"]
    right = point_in_time_join(entity, source, join_keys=keys, features=["orders"])
    latest = source.sort_values("event_timestamp").drop_duplicates(keys, keep="last")
    naive = entity.merge(latest[[*keys, "orders"]], on=keys, how="left")
    leaked = (naive["orders"].to_numpy() != right["orders"].to_numpy()) & \
        right["orders"].notna().to_numpy()
    assert leaked.mean() > 0.3  # most labels would see values from after their time
    same(right, brute_force(entity, source, keys, ["orders"], None, None))


def test_a_service_joins_each_view_and_names_clashes() -> None:
    entity, source = generated(6)
    repo = parse_repo("""
entities:
  - {name: customer, join_keys: [customer_id, region]}
feature_views:
  - name: stats
    entities: [customer]
    ttl: 2d
    schema: [{name: orders, dtype: long}, {name: spend, dtype: double}]
    source: {path: stats.parquet, timestamp_field: event_timestamp,
             created_timestamp_column: created}
  - name: recent
    entities: [customer]
    ttl: 6h
    schema: [{name: orders, dtype: long}]
    source: {path: recent.parquet}
feature_services:
  - {name: churn, features: ["stats", "recent:orders"]}
  - {name: short, features: ["stats:spend"]}
""")
    sources = {"stats.parquet": source, "recent.parquet": source}

    def read(src: FileSource) -> pd.DataFrame:
        return sources[src.path]

    with pytest.raises(InvalidInputError, match="full feature names"):
        training_frame(entity, repo, "churn", read_source=read)
    frame = training_frame(entity, repo, "churn", read_source=read, full_feature_names=True)
    assert list(frame.columns) == [*entity.columns, "stats__orders", "stats__spend",
                                   "recent__orders"]
    keys = ["customer_id", "region"]
    stats = brute_force(entity, source, keys, ["orders"], dt.timedelta(days=2), "created")
    recent = brute_force(entity, source, keys, ["orders"], dt.timedelta(hours=6), None)
    same(frame[["stats__orders"]].rename(columns={"stats__orders": "orders"}),
         stats[["orders"]])
    same(frame[["recent__orders"]].rename(columns={"recent__orders": "orders"}),
         recent[["orders"]])
    assert list(training_frame(entity, repo, "short", read_source=read).columns) == [
        *entity.columns, "spend"]


def test_bad_frames_are_refused_with_the_column() -> None:
    entity, source = generated(7, rows=20, entities=10)
    keys = ["customer_id", "region"]
    with pytest.raises(InvalidInputError, match="'event_timestamp'"):
        point_in_time_join(entity.drop(columns="event_timestamp"), source, join_keys=keys,
                           features=["orders"])
    with pytest.raises(InvalidInputError, match=r"the source has no column.*'ts'"):
        point_in_time_join(entity, source, join_keys=keys, features=["orders"],
                           timestamp_field="ts")
    with pytest.raises(InvalidInputError, match="'orders_30d'"):
        point_in_time_join(entity, source, join_keys=keys, features=["orders_30d"])
    with pytest.raises(InvalidInputError, match=r"already has.*label"):
        point_in_time_join(entity, source.rename(columns={"orders": "label"}),
                           join_keys=keys, features=["label"])
    blank = entity.astype({"event_timestamp": object})
    blank.loc[2, "event_timestamp"] = None
    with pytest.raises(InvalidInputError, match="empty values"):
        point_in_time_join(blank, source, join_keys=keys, features=["orders"])
    with pytest.raises(InvalidInputError, match="not times"):
        point_in_time_join(entity.assign(event_timestamp="yesterday"), source,
                           join_keys=keys, features=["orders"])
