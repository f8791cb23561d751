"""The prediction log: sampling and bounds on the event loop, JSON encoding and batched
writes in flush, first entry kept per request id, pruning; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from modelhost import Client
from modelhost.monitoring import LogOptions, PredictionLog
from modelhost.monitoring.log import RateLimit
from modelhost.rollout import ArmRole
from modelhost.store.monitoring import LogEntry


@dataclass(frozen=True)
class Seen:
    """The fields of serving's Observation that the log reads."""

    request_id: str
    model: str | None = "iris"
    version: str | None = "1.0.0"
    arm: ArmRole | None = ArmRole.STABLE
    status: int = 200
    rows: int = 1
    inputs: Any = None
    predictions: Any = None
    probabilities: Any = None
    latency_s: float = 0.001
    at: float = field(default_factory=time.time)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


COLUMNS = ["a", "b"]


def answered(request_id: str, **fields: Any) -> Seen:
    values: dict[str, Any] = {"inputs": np.array([[1.5, 2.0]]),
                              "predictions": np.array([1])}
    values.update(fields)
    return Seen(request_id, **values)


def test_answered_predictions_are_written_as_json_in_one_flush(client: Client) -> None:
    log = PredictionLog(client.predictions, columns=lambda m, v: COLUMNS)
    frame = pd.DataFrame({"a": [1.0, None], "b": ["x", "y"]})
    log.observe(answered("r1", probabilities=np.array([[0.25, 0.75]])))
    log.observe(answered("r2", arm=None, rows=2, inputs=frame, predictions=[0, 1]))
    log.observe(answered("r3", inputs=np.array([[1.0, 2.0, 3.0]])))  # not the 2 columns
    assert log.pending == 3 and client.predictions.find(["r1"]) == {}
    assert log.flush() == 3 and log.pending == 0 and log.written == 3
    found = client.predictions.find(["r1", "r2", "r3", "unknown"])
    assert set(found) == {"r1", "r2", "r3"}
    r1, r2, r3 = found["r1"], found["r2"], found["r3"]
    assert (r1.model, r1.version, r1.arm, r1.rows) == ("iris", "1.0.0", "stable", 1)
    assert r1.inputs == {"columns": ["a", "b"], "data": [[1.5, 2.0]]}
    assert r1.outputs == {"predictions": [1], "probabilities": [[0.25, 0.75]]}
    assert r2.arm is None and r2.rows == 2
    assert r2.inputs == {"columns": ["a", "b"], "data": [[1.0, "x"], [None, "y"]]}
    assert r2.outputs == {"predictions": [0, 1]}
    assert r3.inputs == [[1.0, 2.0, 3.0]]  # a tensor stays as it is
    age = dt.datetime.now(dt.timezone.utc) - r1.at
    assert dt.timedelta(0) <= age < dt.timedelta(minutes=1)


def test_only_answered_predictions_of_known_models_are_logged(client: Client) -> None:
    log = PredictionLog(client.predictions)
    log.observe(answered("refused", status=422, predictions=None))
    log.observe(answered("error", status=500))
    log.observe(answered("no-data", predictions=None))  # the log did not get the data
    log.observe(answered("unknown-model", model=None, version=None))
    assert log.pending == 3  # recorded (the profiles count errors), but not logged
    assert log.flush() == 0 and log.pending == 0
    assert client.predictions.find(["refused", "error", "no-data", "unknown-model"]) == {}


def test_a_request_id_logged_twice_keeps_its_first_entry(client: Client) -> None:
    log = PredictionLog(client.predictions)
    log.observe(answered("same", predictions=np.array([1])))
    log.flush()
    log.observe(answered("same", predictions=np.array([2])))
    log.observe(answered("other", predictions=np.array([2])))
    assert log.flush() == 2  # the batch is not lost because of the repeated id
    found = client.predictions.find(["same", "other"])
    assert found["same"].outputs == {"predictions": [1]}
    assert found["other"].outputs == {"predictions": [2]}


class Kept:
    """A store that keeps the ids of what it is given."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def append_chunks(self, chunks: list[Any]) -> None:
        self.ids += [i for c in chunks for i in c.request_ids]


def test_sampling_keeps_the_configured_share() -> None:
    draws = iter(np.random.default_rng(7).random(10_000))
    kept = Kept()
    log = PredictionLog(kept, options=LogOptions(sample=0.25, max_per_s=1e9),  # type: ignore[arg-type]
                        draw=lambda: float(next(draws)))
    for i in range(10_000):
        log.observe(answered(f"r{i}"))
    log.flush()
    # binomial(10,000, 0.25): sd 43; 4 sd either side
    assert abs(len(kept.ids) - 2500) < 4 * 43.3, len(kept.ids)


def test_at_most_max_per_s_are_logged_per_second() -> None:
    """The bucket runs on the requests' answer times, in the flush."""
    kept = Kept()
    log = PredictionLog(kept, options=LogOptions(max_per_s=100))  # type: ignore[arg-type]

    def logged(prefix: str, times: list[float]) -> int:
        for i, at in enumerate(times):
            log.observe(answered(f"{prefix}-{i}", at=at))
        before = len(kept.ids)
        log.flush()
        return len(kept.ids) - before

    assert logged("burst", [100.0] * 1000) == 100  # the bucket holds one second's worth
    assert logged("later", [100.5] * 1000) == 50  # half a second refills half of it
    # a quiet spell refills the bucket, never beyond one second's worth
    assert logged("quiet", [110.5] * 1000) == 100
    # below the rate, every request is logged
    assert logged("slow", [110.5 + 0.02 * (i + 1) for i in range(50)]) == 50


def test_a_cap_below_one_per_second_still_logs() -> None:
    limit = RateLimit(0.5)
    assert limit.admit([100.0] * 10) == [0]
    assert limit.admit([100.0 + i for i in range(1, 11)]) == [1, 3, 5, 7, 9]  # one per 2 s


def test_a_clock_set_back_does_not_stop_the_log() -> None:
    limit = RateLimit(10.0)
    assert limit.admit([5000.0 + i / 10 for i in range(20)]) is None
    # the clock goes back an hour: the bucket refills from the new times on
    assert limit.admit([1400.0 + i / 10 for i in range(30)]) is None


def _one_by_one(limit: RateLimit, times: list[float]) -> list[int]:
    """The bucket stepped request by request (what admit's shortcut must agree with)."""
    kept = []
    for i, at in enumerate(times):
        if limit.admit([at]) is None:
            kept.append(i)
    return kept


@pytest.mark.parametrize("rate", [0.5, 3.0, 100.0, 1000.0])
def test_the_bucket_keeps_the_same_requests_in_one_batch_as_one_by_one(rate: float) -> None:
    rng = np.random.default_rng(int(rate * 10))
    for trial in range(40):
        # bursts and gaps, around the rate; a clock set back a little now and then
        gaps = rng.exponential(1.0 / rate * rng.choice([0.2, 1.0, 5.0]), 300)
        times = list(np.cumsum(gaps) + 1000.0)
        if trial % 5 == 0:
            times[150] -= 0.5  # set back a little: no time passes
        batched, single = RateLimit(rate), RateLimit(rate)
        position = 0
        for size in rng.integers(1, 80, 10):  # the flushes' batches
            part = times[position:position + size]
            found = batched.admit(part)
            expected = _one_by_one(single, part)
            assert (list(range(len(part))) if found is None else found) == expected
            position += size


def test_a_full_buffer_drops_and_counts_instead_of_growing() -> None:
    log = PredictionLog(None, options=LogOptions(buffer_requests=3))  # type: ignore[arg-type]
    for i in range(5):
        log.observe(answered(f"r{i}"))
    assert log.pending == 3 and log.dropped == 2


def test_a_failing_database_drops_the_batch_and_the_next_flush_works(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = PredictionLog(client.predictions, clock=clock)
    engine = client.db.engine
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE prediction_chunks RENAME TO prediction_chunks_gone"))
    try:
        for i in range(3):  # a database that stays down, flush after flush
            clock.now += 2
            log.observe(answered(f"lost-{i}"))
            assert log.flush() == 0  # no exception: the flusher runs in the background
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE prediction_chunks_gone RENAME TO prediction_chunks"))
    assert log.dropped == 3 and log.pending == 0
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "modelhost.monitoring.log"]
    assert warnings == ["prediction log: 1 entries could not be stored and were dropped "
                        "(1 dropped so far; said at most once a minute)"]
    log.observe(answered("kept"))
    assert log.flush() == 1
    assert set(client.predictions.find(["lost-0", "kept"])) == {"kept"}


def test_flush_writes_at_most_limit_per_transaction(client: Client) -> None:
    log = PredictionLog(client.predictions)
    for i in range(25):
        log.observe(answered(f"r{i}"))
    assert log.flush(limit=10) == 10 and log.pending == 15
    assert log.flush(limit=10) == 10 and log.flush(limit=10) == 5 and log.flush() == 0
    assert len(client.predictions.find(f"r{i}" for i in range(25))) == 25


def test_prune_deletes_what_is_past_the_retention(client: Client) -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    store = client.predictions
    entries = [LogEntry(f"d{age}", "iris", "1.0.0", None, now - dt.timedelta(days=age), 1,
                        "[[1.0]]", '{"predictions": [0]}') for age in (1, 29, 31, 400)]
    store.append(entries)
    log = PredictionLog(store, options=LogOptions(retention=dt.timedelta(days=30)))
    assert log.prune(now) == (2, 0)
    assert set(store.find(["d1", "d29", "d31", "d400"])) == {"d1", "d29"}


def test_one_entry_that_cannot_be_encoded_costs_only_itself(client: Client) -> None:
    def columns(model: str, version: str) -> list[str] | None:
        if version == "gone":
            raise LookupError("the version was deleted")
        return None

    log = PredictionLog(client.predictions, columns=columns)
    log.observe(answered("words", rows=2, predictions=np.array(["setosa", "virginica"])))
    log.observe(answered("one-word", predictions=np.array(["setosa"])))
    log.observe(answered("lost", version="gone"))
    log.observe(answered("kept"))
    assert log.flush() == 3 and log.dropped == 1
    found = client.predictions.find(["words", "one-word", "lost", "kept"], inputs=False)
    assert set(found) == {"words", "one-word", "kept"}
    assert found["words"].outputs == {"predictions": ["setosa", "virginica"]}
    assert found["one-word"].outputs == {"predictions": ["setosa"]}
    assert found["kept"].inputs is None  # not read unless asked for


def test_the_buffer_is_bounded_in_rows_too(client: Client) -> None:
    log = PredictionLog(client.predictions, options=LogOptions(buffer_rows=10))
    log.observe(answered("six", rows=6))
    log.observe(answered("five", rows=5))  # 11 rows: refused
    log.observe(answered("four", rows=4))
    assert log.pending == 2 and log.dropped == 1
    log.flush()
    log.observe(answered("ten", rows=10))  # the flush made room
    assert log.pending == 1
