"""The prediction log's chunks: many chunks per flush, lookups and the feedback join across
chunks and at their edges, whole-chunk pruning that keeps a reused id's first entry;
on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import text

from modelhost import Client
from modelhost.monitoring import LogOptions, PredictionLog
from modelhost.store.monitoring import CHUNK, CHUNK_SPAN_S, Label, LogEntry, PredictionLogStore

T0 = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
COLUMNS = ["a", "b", "c"]


@dataclass(frozen=True)
class Seen:
    request_id: str
    inputs: Any
    predictions: Any
    model: str | None = "iris"
    version: str | None = "1.0.0"
    arm: Any = None
    status: int = 200
    rows: int = 1
    probabilities: Any = None
    latency_s: float = 0.001
    at: float = field(default_factory=time.time)


def entry(request_id: str, at: dt.datetime, prediction: int, *, version: str = "1.0.0",
          model: str = "iris") -> LogEntry:
    return LogEntry(request_id, model, version, "stable", at, 1, f"[[{prediction}]]",
                    orjson.dumps({"predictions": [prediction]}).decode())


def chunk_sizes(client: Client) -> list[int]:
    with client.db.engine.connect() as conn:
        return [r[0] for r in conn.execute(text(
            "SELECT requests FROM prediction_chunks ORDER BY id"))]


@pytest.fixture
def store(client: Client) -> PredictionLogStore:
    return client.predictions


def test_a_large_flush_is_split_into_chunks_and_every_request_is_found(client: Client) -> None:
    log = PredictionLog(client.predictions, options=LogOptions(max_per_s=1e9),
                        columns=lambda m, v: COLUMNS)
    rng = np.random.default_rng(3)
    inputs = {f"r{i}": rng.normal(size=(1 + i % 3, 3)) for i in range(CHUNK * 2 + 7)}
    for rid, x in inputs.items():
        log.observe(Seen(rid, x, np.arange(len(x)), rows=len(x),
                         probabilities=np.full((len(x), 2), 0.5)))
    log.observe(Seen("other-version", np.ones((1, 3)), np.array([1]), version="2.0.0"))
    assert log.flush() == len(inputs) + 1
    assert sorted(chunk_sizes(client)) == [1, 7, CHUNK, CHUNK]
    found = client.predictions.find([*inputs, "other-version"])
    assert len(found) == len(inputs) + 1
    for rid, x in inputs.items():
        assert found[rid].inputs == {"columns": COLUMNS, "data": x.tolist()}
        assert found[rid].outputs == {"predictions": list(range(len(x))),
                                      "probabilities": [[0.5, 0.5]] * len(x)}
        assert found[rid].rows == len(x)
    assert found["other-version"].version == "2.0.0"


def test_one_unencodable_request_costs_only_itself_inside_a_full_chunk(client: Client) -> None:
    log = PredictionLog(client.predictions, options=LogOptions(max_per_s=1e9))
    for i in range(20):
        log.observe(Seen(f"r{i}", np.ones((1, 2)), np.array([i])))
    log.observe(Seen("bad", {(1, 2): [1.0]}, np.array([1])))  # JSON has no tuple keys
    assert log.flush() == 20 and log.dropped == 1
    assert set(client.predictions.find(["bad", "r0", "r19"])) == {"r0", "r19"}


def test_labelled_counts_only_the_window_at_the_edges_of_chunks(
        store: PredictionLogStore) -> None:
    # 300 predictions a second apart (several chunks: CHUNK_SPAN_S splits them), labelled
    # in reverse order of time.
    entries = [entry(f"p{i}", T0 + dt.timedelta(seconds=i), i % 2) for i in range(300)]
    store.append(entries)
    assert len(chunk_sizes_of(store)) >= 300 // int(CHUNK_SPAN_S)
    store.record_feedback([Label(f"p{i}", "iris", "1.0.0", f"[{1 - i % 2}]")
                           for i in reversed(range(300))], now=T0)
    start, end = T0 + dt.timedelta(seconds=50), T0 + dt.timedelta(seconds=130)
    logged, pairs = store.labelled("iris", "1.0.0", start=start, end=end)
    assert logged == 80
    assert pairs == [({"predictions": [i % 2]}, [1 - i % 2]) for i in range(50, 130)]
    assert store.labelled("iris", "2.0.0", start=start, end=end) == (0, [])


def chunk_sizes_of(store: PredictionLogStore) -> list[int]:
    with store._db.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT requests FROM prediction_chunks"))]


def test_append_keeps_a_chunk_within_its_span_so_pruning_is_exact(
        store: PredictionLogStore) -> None:
    store.append([entry("new", T0, 1), entry("old", T0 - dt.timedelta(days=31), 0),
                  entry("older", T0 - dt.timedelta(days=31, seconds=30), 0)])
    assert sorted(chunk_sizes_of(store)) == [1, 2]
    assert store.prune(before=T0 - dt.timedelta(days=30)) == (2, 0)
    assert set(store.find(["new", "old", "older"])) == {"new"}
    assert store.prune(before=T0 - dt.timedelta(days=30)) == (0, 0)


def test_pruning_a_reused_ids_later_entry_keeps_its_first(store: PredictionLogStore) -> None:
    store.append([entry("same", T0, 1)])
    store.append([entry("same", T0 - dt.timedelta(days=40), 2)])  # logged later, made earlier
    assert store.find(["same"])["same"].outputs == {"predictions": [1]}
    assert store.prune(before=T0 - dt.timedelta(days=30)) == (1, 0)
    assert store.find(["same"])["same"].outputs == {"predictions": [1]}


def test_pruning_many_chunks_takes_several_transactions(store: PredictionLogStore) -> None:
    old = T0 - dt.timedelta(days=60)
    store.append([entry(f"o{i}", old + dt.timedelta(minutes=2 * i), 0) for i in range(450)])
    store.append([entry("kept", T0, 1)])
    assert store.prune(before=T0 - dt.timedelta(days=1)) == (450, 0)
    assert chunk_sizes_of(store) == [1]
    with store._db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM prediction_ids")).scalar() == 1


def test_float_rows_are_stored_as_binary_and_read_back_as_json_values(
        client: Client) -> None:
    log = PredictionLog(client.predictions, options=LogOptions(max_per_s=1e9),
                        columns=lambda m, v: COLUMNS)
    log.observe(Seen("floats", np.array([[1.5, np.nan, 3.25], [4.0, 5.0, 6.0]]),
                     np.array([0, 1]), rows=2))
    log.observe(Seen("ints", np.array([[1, 2, 3]]), np.array([1])))
    log.observe(Seen("words", np.array([["a", "b", "c"]], dtype=object), np.array([1])))
    log.observe(Seen("float32", np.array([[0.5, 1.5, 2.5]], dtype=np.float32),
                     np.array([1])))
    log.observe(Seen("more", np.array([[7.0, 8.0, 9.0]]), np.array([1])))
    assert log.flush() == 5
    found = client.predictions.find(["floats", "ints", "words", "float32", "more"])
    assert found["floats"].inputs == {"columns": COLUMNS,
                                      "data": [[1.5, None, 3.25], [4.0, 5.0, 6.0]]}
    assert found["ints"].inputs == {"columns": COLUMNS, "data": [[1, 2, 3]]}
    assert found["words"].inputs == {"columns": COLUMNS, "data": [["a", "b", "c"]]}
    assert found["float32"].inputs == {"columns": COLUMNS, "data": [[0.5, 1.5, 2.5]]}
    assert found["more"].inputs == {"columns": COLUMNS, "data": [[7.0, 8.0, 9.0]]}
    with client.db.engine.connect() as conn:
        table = conn.execute(text('SELECT "table" FROM prediction_chunks')).scalar_one()
    assert len(table) == 3 * 3 * 8  # the three float64 rows, nothing else
