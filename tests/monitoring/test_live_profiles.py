"""LiveProfiles: requests buffered on the event loop, counted per version and minute in
flush on the version's reference layout, written as this worker's minute and hour windows
(whole vectors, so a failed write is retried without counting twice), on a real
ProfileStore on SQLite and a fake clock."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelhost.monitoring.drift import DriftService
from modelhost.monitoring.profiles import LiveProfiles
from modelhost.stats import profile as prof
from modelhost.stats.profile import Layout, Reference, build_reference
from modelhost.store import Database
from modelhost.store.profiles import HOUR_S, MINUTE_S, ProfileStore, StoredReference

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # an hour's first minute
NAMES = ["x", "y", "c"]
DTYPES = {"x": "float64", "y": "float64", "c": "object"}


def _reference(seed: int = 11) -> Reference:
    rng = np.random.default_rng(seed)
    n = 2000
    return build_reference({"x": rng.normal(0.0, 1.0, n), "y": rng.normal(5.0, 2.0, n),
                            "c": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])},
                           rng.choice([0, 1, 2], n), categorical_predictions=True)


REFERENCE = _reference()
REPLACEMENT = _reference(12)  # attached later instead of REFERENCE


@dataclass(frozen=True)
class Seen:
    """The fields of serving's Observation that live profiles read."""

    model: str | None = "churn"
    version: str | None = "1.0.0"
    status: int = 200
    latency_s: float = 0.01
    rows: int = 1
    inputs: Any = None
    predictions: Any = None
    at: float = T0.timestamp()  # when answered (the clock's start)
    arm: Any = None
    request_id: str = ""
    probabilities: Any = None


class Clock:
    def __init__(self, at: dt.datetime = T0) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def at(self, t: dt.datetime) -> None:
        self.now = t.timestamp()


@dataclass
class References:
    """The reference look-up: what is attached now, and how often it was asked."""

    attached: dict[tuple[str, str], Reference] = field(default_factory=dict)
    calls: int = 0
    failing: bool = False

    def __call__(self, model: str, version: str) -> Reference | None:
        self.calls += 1
        if self.failing:
            raise RuntimeError("database is down")
        return self.attached.get((model, version))


@pytest.fixture
def store(tmp_path: Path, sqlite_template: Path) -> Iterator[ProfileStore]:
    path = tmp_path / "modelhost.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    yield ProfileStore(db)
    db.dispose()


def _live(store: ProfileStore, clock: Clock, references: References | None = None,
          **options: Any) -> LiveProfiles:
    if references is None:
        references = References({("churn", "1.0.0"): REFERENCE})
    return LiveProfiles(store, references=references, clock=clock, worker="w1", **options)


_rng = np.random.default_rng(5)


def _frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": _rng.normal(0.0, 1.0, rows),
                         "y": _rng.normal(5.0, 2.0, rows),
                         "c": _rng.choice(["a", "b", "c", "zz"], rows)})


def _answered(rows: int = 3, *, as_array: bool = False, latency_s: float = 0.02,
              **fields: Any) -> Seen:
    frame = _frame(rows)
    inputs = frame.to_numpy(dtype=object) if as_array else frame
    return Seen(rows=rows, latency_s=latency_s, inputs=inputs,
                predictions=_rng.choice([0, 1, 2, 7], rows), **fields)


def _expected(requests: Sequence[Seen], reference: Reference | None = REFERENCE,
              ) -> np.ndarray:
    """The vector of ``requests`` computed directly: one add_requests over all of them and
    one add_rows over the concatenated inputs (typed columns) of the answered ones."""
    layout = Layout(reference)
    vector = layout.empty()
    layout.add_requests(vector, latencies_s=np.array([s.latency_s for s in requests]),
                        errors=sum(s.status != 200 for s in requests),
                        rows=sum(s.rows for s in requests))
    # Profiled: answered requests whose inputs are a frame or 2-D array of the columns.
    answered = [s for s in requests if s.status == 200 and s.inputs is not None
                and np.ndim(s.inputs) == 2 and np.shape(s.inputs)[1] == len(NAMES)]
    if answered and reference is not None:
        frame = pd.concat([s.inputs if isinstance(s.inputs, pd.DataFrame)
                           else pd.DataFrame(s.inputs, columns=NAMES).astype(DTYPES)
                           for s in answered], ignore_index=True)
        predictions = np.concatenate([np.asarray(s.predictions) for s in answered])
        layout.add_rows(vector, {n: frame[n].to_numpy() for n in NAMES}, predictions)
    return vector


def _observe_at(live: LiveProfiles, clock: Clock, at: dt.datetime, *seen: Seen) -> None:
    """Requests answered at ``at`` (and the worker's clock there too)."""
    clock.at(at)
    for one in seen:
        live.observe(replace(one, at=at.timestamp()))


def _rows(store: ProfileStore, *, width: int = MINUTE_S, version: str = "1.0.0",
          ) -> list[tuple[dt.datetime, str, np.ndarray]]:
    return [(at, digest, np.frombuffer(raw, dtype="<f8"))
            for at, digest, raw in store.windows("churn", version, width_s=width,
                                                 start=T0 - dt.timedelta(days=1),
                                                 end=T0 + dt.timedelta(days=1))]


def _assert_vector(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# --- what is counted ----------------------------------------------------------------------


def test_counts_equal_the_layout_on_the_concatenated_frames_and_arrays(
        store: ProfileStore) -> None:
    clock = Clock()
    live = _live(store, clock)
    cached = _answered(2)  # a cached answer's predictions are a list
    requests = [_answered(3), _answered(5, as_array=True), _answered(1),
                _answered(4, as_array=True, latency_s=0.3),
                Seen(rows=2, inputs=cached.inputs, predictions=list(cached.predictions))]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=10), *requests)
    assert live.flush() == 5
    expected = _expected(requests)
    # The data is all there: 15 rows of three columns and the predictions.
    layout = Layout(REFERENCE)
    assert expected[prof.REQUESTS] == 5 and expected[prof.ROWS] == 15
    for column in REFERENCE.features:
        slots = layout.column_counts(expected, column)
        # numeric: nulls, below, bins, above (then two sums); categorical: all counts
        counted = len(column.counts) + 3 if column.kind == "numeric" else slots.size
        assert slots[:counted].sum() == 15, column.name
    [(start, digest, minute)] = _rows(store)
    assert (start, digest) == (T0, REFERENCE.digest)
    _assert_vector(minute, expected)
    [(hour_start, _, hour)] = _rows(store, width=HOUR_S)
    assert hour_start == T0
    _assert_vector(hour, expected)


def test_windows_split_at_minute_boundaries_and_add_up_in_the_hour(
        store: ProfileStore) -> None:
    clock = Clock()
    live = _live(store, clock)
    first = [_answered(2), _answered(3, as_array=True)]
    second = [_answered(4)]
    later = [_answered(1, as_array=True)]
    next_hour = [_answered(2)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=59.999), *first)
    _observe_at(live, clock, T0 + dt.timedelta(seconds=60), *second)
    _observe_at(live, clock, T0 + dt.timedelta(minutes=59, seconds=30), *later)
    _observe_at(live, clock, T0 + dt.timedelta(hours=1, seconds=1), *next_hour)
    assert live.flush() == 5
    minutes = _rows(store)
    assert [at for at, _, _ in minutes] == [
        T0, T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=59),
        T0 + dt.timedelta(hours=1)]
    for (_, _, got), requests in zip(minutes, [first, second, later, next_hour],
                                     strict=True):
        _assert_vector(got, _expected(requests))
    hours = _rows(store, width=HOUR_S)
    assert [at for at, _, _ in hours] == [T0, T0 + dt.timedelta(hours=1)]
    _assert_vector(hours[0][2], _expected(first) + _expected(second) + _expected(later))
    _assert_vector(hours[1][2], _expected(next_hour))
    # More in an open window: its row is rewritten with the whole vector, not appended.
    more = [_answered(6)]
    _observe_at(live, clock, T0 + dt.timedelta(hours=1, seconds=20), *more)
    assert live.flush() == 1
    _assert_vector(_rows(store)[-1][2], _expected(next_hour) + _expected(more))
    _assert_vector(_rows(store, width=HOUR_S)[-1][2],
                   _expected(next_hour) + _expected(more))
    assert len(_rows(store)) == 4


def test_errors_and_unprofiled_inputs_count_as_requests_only(store: ProfileStore) -> None:
    clock = Clock()
    live = _live(store, clock)
    ok = _answered(2)
    error = Seen(status=500, rows=3, latency_s=1.5, inputs=_frame(3),  # not profiled
                 predictions=np.array([0, 1, 2]))
    refused = Seen(status=422, rows=0, latency_s=0.001)
    tensor = Seen(rows=2, inputs=np.zeros((2, 2, 2)), predictions=np.array([0, 1]))
    narrow = Seen(rows=1, inputs=np.zeros((1, 2)), predictions=np.array([0]))
    _observe_at(live, clock, T0 + dt.timedelta(seconds=5), ok, error, refused, tensor,
                narrow)
    live.flush()
    [(_, _, got)] = _rows(store)
    header = got[:prof.HEADER]
    assert header[prof.REQUESTS] == 5 and header[prof.ERRORS] == 2
    assert header[prof.ROWS] == 2 + 3 + 0 + 2 + 1
    assert header[prof.LATENCY_SUM] == pytest.approx(0.02 + 1.5 + 0.001 + 0.01 + 0.01)
    _assert_vector(got, _expected([ok, error, refused, tensor, narrow]))
    # Only the answered, profiled request's two rows are in the columns.
    expected_columns = _expected([ok])[prof.HEADER:]
    _assert_vector(got[prof.HEADER:], expected_columns)


def test_requests_without_a_model_or_version_are_ignored(store: ProfileStore) -> None:
    clock = Clock()
    live = _live(store, clock)
    live.observe(_answered(model=None, version=None))
    live.observe(_answered(version=None))
    live.observe(Seen(model=None, version="1.0.0", status=404))
    assert live.flush() == 0 and live.dropped == 0
    assert _rows(store) == []


def test_a_version_without_a_reference_gets_header_counts(store: ProfileStore) -> None:
    clock = Clock()
    live = _live(store, clock, References())
    requests = [_answered(2), Seen(status=500, latency_s=0.5, rows=0)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=1), *requests)
    live.flush()
    [(_, digest, got)] = _rows(store)
    assert digest == "none" and got.size == prof.HEADER
    _assert_vector(got, _expected(requests, reference=None))


def test_versions_are_counted_apart(store: ProfileStore) -> None:
    clock = Clock()
    live = _live(store, clock, References({("churn", "1.0.0"): REFERENCE}))
    one, other = _answered(2), _answered(3, version="2.0.0")
    _observe_at(live, clock, T0, one, other)
    live.flush()
    _assert_vector(_rows(store)[0][2], _expected([one]))
    _assert_vector(_rows(store, version="2.0.0")[0][2], _expected([other], reference=None))


# --- bounds and failures ------------------------------------------------------------------


def test_a_full_buffer_drops_and_counts_the_requests_it_drops(store: ProfileStore) -> None:
    clock = Clock()
    live = _live(store, clock, buffer_requests=3)
    for _ in range(5):
        live.observe(_answered(1))
    assert live.dropped == 2 and live.flush() == 3
    assert _rows(store)[0][2][prof.REQUESTS] == 3
    live.observe(_answered(1))  # flushed: room again
    assert live.dropped == 2 and live.flush() == 1
    assert _rows(store)[0][2][prof.REQUESTS] == 4


def test_the_buffer_is_bounded_by_rows_too(store: ProfileStore) -> None:
    clock = Clock()
    by_rows = _live(store, clock, buffer_rows=10)
    by_rows.observe(_answered(6))
    by_rows.observe(_answered(6))  # 12 rows > 10
    by_rows.observe(_answered(4))  # 10 rows: fits
    assert by_rows.dropped == 1 and by_rows.flush() == 2
    by_rows.observe(_answered(10))
    assert by_rows.dropped == 1 and by_rows.flush() == 1


def test_a_failed_write_loses_nothing_and_does_not_count_twice(
        store: ProfileStore, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    live = _live(store, clock)
    write = store.write_windows
    attempts: list[int] = []

    def fail_once(windows: Any) -> None:
        attempts.append(len(windows))
        if len(attempts) == 1:
            raise RuntimeError("database is down")
        write(windows)

    monkeypatch.setattr(store, "write_windows", fail_once)
    first = [_answered(2), _answered(3, as_array=True)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=10), *first)
    with caplog.at_level(logging.WARNING, logger="modelhost.monitoring.profiles"):
        assert live.flush() == 2  # no exception
    assert _rows(store) == [] and attempts == [2]
    assert any("could not be written" in r.getMessage() for r in caplog.records)
    assert live.flush() == 0  # nothing new: the unwritten windows are written again
    assert attempts == [2, 2]
    [(_, _, minute)] = _rows(store)
    _assert_vector(minute, _expected(first))
    second = [_answered(4)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=20), *second)
    assert live.flush() == 1
    assert attempts == [2, 2, 2]
    [(_, _, minute)] = _rows(store)
    _assert_vector(minute, _expected(first + second))
    assert live.flush() == 0 and attempts == [2, 2, 2]  # nothing dirty: nothing written
    _assert_vector(_rows(store, width=HOUR_S)[0][2], _expected(first + second))


def test_written_closed_windows_are_forgotten_unwritten_ones_are_kept(
        store: ProfileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    live = _live(store, clock)
    windows: dict[Any, Any] = live._windows  # what the worker holds in memory
    _observe_at(live, clock, T0 + dt.timedelta(seconds=10), _answered(1))
    live.flush()
    assert {(k[3], k[4]) for k in windows} == {(MINUTE_S, T0.timestamp()),
                                               (HOUR_S, T0.timestamp())}
    clock.at(T0 + dt.timedelta(minutes=3, seconds=59))  # the minute ended under 3 min ago
    live.flush()
    assert len(windows) == 2
    clock.at(T0 + dt.timedelta(minutes=4, seconds=1))
    live.flush()
    assert {k[3] for k in windows} == {HOUR_S}
    clock.at(T0 + dt.timedelta(hours=1, minutes=3, seconds=1))
    live.flush()
    assert windows == {}

    # A window whose write fails stays, however old, until it is written.
    def down(_windows: Any) -> None:
        raise RuntimeError("database is down")

    write = store.write_windows
    monkeypatch.setattr(store, "write_windows", down)
    late = T0 + dt.timedelta(hours=2)
    _observe_at(live, clock, late, _answered(2))
    live.flush()
    clock.at(late + dt.timedelta(days=1))
    live.flush()
    assert len(windows) == 2 and _rows(store)[-1][0] != late
    monkeypatch.setattr(store, "write_windows", write)
    live.flush()
    assert windows == {}
    assert _rows(store)[-1][0] == late and _rows(store)[-1][2][prof.REQUESTS] == 1


# --- references ---------------------------------------------------------------------------


def test_a_version_without_a_reference_looks_it_up_at_every_flush(
        store: ProfileStore) -> None:
    clock = Clock()
    references = References()
    live = _live(store, clock, references, reference_ttl_s=3600.0)
    before = [_answered(2)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=1), *before)
    live.flush()
    references.attached[("churn", "1.0.0")] = REFERENCE
    after = [_answered(3)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=2), *after)
    live.flush()
    assert references.calls == 2
    rows = {digest: vector for _, digest, vector in _rows(store)}
    assert set(rows) == {"none", REFERENCE.digest}  # the same minute, two layouts
    _assert_vector(rows["none"], _expected(before, reference=None))
    _assert_vector(rows[REFERENCE.digest], _expected(after))


def test_a_reference_is_cached_for_the_ttl(store: ProfileStore) -> None:
    clock = Clock()
    references = References({("churn", "1.0.0"): REFERENCE})
    live = _live(store, clock, references, reference_ttl_s=3600.0)
    for second in range(3):
        _observe_at(live, clock, T0 + dt.timedelta(seconds=second), _answered(1))
        live.flush()
        references.attached[("churn", "1.0.0")] = REPLACEMENT  # not seen within the TTL
    assert references.calls == 1
    assert [digest for _, digest, _ in _rows(store)] == [REFERENCE.digest]


def test_a_replaced_reference_is_used_once_the_ttl_has_passed(store: ProfileStore) -> None:
    clock = Clock()
    references = References({("churn", "1.0.0"): REFERENCE})
    live = _live(store, clock, references, reference_ttl_s=0.0)  # looked up every flush
    old = [_answered(2)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=1), *old)
    live.flush()
    references.attached[("churn", "1.0.0")] = REPLACEMENT
    new = [_answered(3)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=2), *new)
    live.flush()
    rows = {digest: vector for _, digest, vector in _rows(store)}
    assert set(rows) == {REFERENCE.digest, REPLACEMENT.digest}
    _assert_vector(rows[REFERENCE.digest], _expected(old))
    _assert_vector(rows[REPLACEMENT.digest], _expected(new, reference=REPLACEMENT))


def test_the_reference_ttl_runs_on_the_given_clock(store: ProfileStore) -> None:
    clock = Clock()
    references = References({("churn", "1.0.0"): REFERENCE})
    live = _live(store, clock, references, reference_ttl_s=60.0)
    _observe_at(live, clock, T0 + dt.timedelta(seconds=1), _answered(1))
    live.flush()
    references.attached[("churn", "1.0.0")] = REPLACEMENT
    _observe_at(live, clock, T0 + dt.timedelta(seconds=62), _answered(1))
    live.flush()
    assert REPLACEMENT.digest in {digest for _, digest, _ in _rows(store)}


def test_a_failing_reference_look_up_does_not_stop_the_counting(
        store: ProfileStore, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    references = References(failing=True)
    live = _live(store, clock, references, reference_ttl_s=0.0)
    first = [_answered(2)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=1), *first)
    with caplog.at_level(logging.WARNING, logger="modelhost.monitoring.profiles"):
        assert live.flush() == 1
    assert any("could not be read" in r.getMessage() for r in caplog.records)
    [(_, digest, vector)] = _rows(store)
    assert digest == "none"
    _assert_vector(vector, _expected(first, reference=None))



def test_a_known_reference_is_kept_while_the_look_up_fails(store: ProfileStore) -> None:
    clock = Clock()
    references = References({("churn", "1.0.0"): REFERENCE})
    live = _live(store, clock, references, reference_ttl_s=0.0)
    ok = [_answered(2)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=1), *ok)
    live.flush()
    references.failing = True
    during = [_answered(3)]
    _observe_at(live, clock, T0 + dt.timedelta(seconds=2), *during)
    assert live.flush() == 1
    assert references.calls == 2
    [(_, digest, vector)] = _rows(store)
    assert digest == REFERENCE.digest
    _assert_vector(vector, _expected(ok + during))


# --- workers add up -----------------------------------------------------------------------


def test_two_workers_write_their_own_rows_and_the_drift_service_sums_them(
        store: ProfileStore) -> None:
    clock = Clock()
    references = References({("churn", "1.0.0"): REFERENCE})
    one = LiveProfiles(store, references=references, clock=clock, worker="one")
    two = LiveProfiles(store, references=references, clock=clock, worker="two")
    a = [_answered(3), _answered(2, as_array=True)]
    b = [_answered(4), Seen(status=500, rows=0, latency_s=0.2)]
    c = [_answered(5, as_array=True)]
    _observe_at(one, clock, T0 + dt.timedelta(minutes=1, seconds=5), *a)
    _observe_at(two, clock, T0 + dt.timedelta(minutes=1, seconds=30), *b)
    _observe_at(two, clock, T0 + dt.timedelta(minutes=2, seconds=30), *c)
    one.flush()
    two.flush()
    assert [at for at, _, _ in _rows(store)] == [T0 + dt.timedelta(minutes=1)] * 2 + [
        T0 + dt.timedelta(minutes=2)]
    assert len(_rows(store, width=HOUR_S)) == 2

    stored = StoredReference(model="churn", version="1.0.0", digest=REFERENCE.digest,
                             source="train.csv", rows=REFERENCE.rows,
                             profile=REFERENCE.to_dict(), created_at=T0)

    def lookup(model: str, version: str) -> StoredReference | None:
        return stored if (model, version) == ("churn", "1.0.0") else None

    service = DriftService(store, references=lookup, now=lambda: T0 + dt.timedelta(hours=3))
    minutes = service.live("churn", "1.0.0", start=T0, end=T0 + dt.timedelta(minutes=30),
                           reference=REFERENCE)
    assert minutes.counts is not None
    _assert_vector(minutes.counts, _expected(a + b + c))
    hours = service.live("churn", "1.0.0", start=T0, end=T0 + dt.timedelta(hours=2),
                         reference=REFERENCE)  # read from the hour windows
    assert hours.counts is not None
    _assert_vector(hours.counts, _expected(a + b + c))
    report = service.drift("churn", "1.0.0", start=T0, end=T0 + dt.timedelta(hours=1))
    assert (report.requests, report.errors, report.rows) == (5, 1, 14)
