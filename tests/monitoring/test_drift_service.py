"""DriftService: the workers' windows summed over a time range (whole hours from the hour
windows, the partial hours at either end from the minute windows, whole hours before the
minute windows' retention), vectors of another reference counted in the header only, and
the report of PRODUCT.md §3.8 (plus requests, errors, reference, message)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelhost.monitoring.drift import MINUTE_RETENTION, DriftReport, DriftService
from modelhost.stats import profile as prof
from modelhost.stats.profile import Layout, Reference, build_reference
from modelhost.store import Database
from modelhost.store.profiles import (
    HOUR_S,
    MINUTE_S,
    ProfileStore,
    StoredReference,
    WindowCounts,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
M = dt.timedelta(minutes=1)
H = dt.timedelta(hours=1)

# PRODUCT.md §3.8, GET /v1/models/{name}/monitoring/drift
REPORT_KEYS = {"model", "version", "window", "rows", "reference_rows", "dataset_drift",
               "drift_share", "features", "prediction"}
FEATURE_KEYS = {"name", "type", "test", "statistic", "p_value", "threshold", "drifted"}
PREDICTION_KEYS = {"test", "statistic", "threshold", "drifted"}


@pytest.fixture
def store(tmp_path: Path, sqlite_template: Path) -> Iterator[ProfileStore]:
    path = tmp_path / "modelhost.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    yield ProfileStore(db)
    db.dispose()


def _service(store: ProfileStore, now: dt.datetime,
             references: Mapping[tuple[str, str], StoredReference] | None = None,
             ) -> DriftService:
    known = dict(references or {})

    def lookup(model: str, version: str) -> StoredReference | None:
        return known.get((model, version))

    return DriftService(store, references=lookup, now=lambda: now)


def _stored(reference: Reference, *, source: str = "train.csv") -> StoredReference:
    return StoredReference(model="churn", version="1.0.0", digest=reference.digest,
                           source=source, rows=reference.rows,
                           profile=reference.to_dict(), created_at=T0 - 30 * H)


def _window(start: dt.datetime, vector: np.ndarray, *, width: int = MINUTE_S,
            worker: str = "w1", digest: str = "none") -> WindowCounts:
    return WindowCounts(model="churn", version="1.0.0", width_s=width, start=start,
                        worker=worker, digest=digest, counts=vector.astype("<f8").tobytes())


def _write_with_hours(store: ProfileStore, minutes: list[WindowCounts]) -> None:
    """Write minute windows and, as a worker does, each worker's hour windows: their sums."""
    hours: dict[tuple[dt.datetime, str, str], np.ndarray] = {}
    for w in minutes:
        assert w.width_s == MINUTE_S
        key = (w.start.replace(minute=0), w.worker, w.digest)
        vector = np.frombuffer(w.counts, dtype="<f8")
        hours[key] = hours[key] + vector if key in hours else vector.copy()
    store.write_windows([*minutes, *(
        _window(start, vector, width=HOUR_S, worker=worker, digest=digest)
        for (start, worker, digest), vector in hours.items())])


# --- which windows a time range reads -------------------------------------------------------
#
# Each window holds a distinct power of two as its request count, so the sum says exactly
# which windows were read (and a window read twice shows as a carry).

Labelled = dict[str, tuple[dt.datetime, int]]


def _write_labelled(store: ProfileStore, windows: Labelled) -> dict[str, int]:
    bits: dict[str, int] = {}
    rows = []
    for i, (label, (start, width)) in enumerate(windows.items()):
        vector = np.zeros(prof.HEADER)
        vector[prof.REQUESTS] = float(2 ** i)
        bits[label] = 2 ** i
        worker = "w2" if label.endswith("'") else "w1"
        rows.append(_window(start, vector, width=width, worker=worker))
    store.write_windows(rows)
    return bits


def _read_labels(total: float, bits: dict[str, int]) -> set[str]:
    assert total == int(total) and int(total) < 2 ** len(bits)
    return {label for label, bit in bits.items() if int(total) & bit}


WINDOWS: Labelled = {
    "m09:59": (T0 - M, MINUTE_S),
    "m10:19": (T0 + 19 * M, MINUTE_S),
    "m10:20": (T0 + 20 * M, MINUTE_S),
    "m10:20'": (T0 + 20 * M, MINUTE_S),  # another worker's row for the same minute
    "m10:59": (T0 + 59 * M, MINUTE_S),
    "m11:00": (T0 + H, MINUTE_S),
    "m11:30": (T0 + H + 30 * M, MINUTE_S),
    "m12:59": (T0 + 2 * H + 59 * M, MINUTE_S),
    "m13:00": (T0 + 3 * H, MINUTE_S),
    "m13:39": (T0 + 3 * H + 39 * M, MINUTE_S),
    "m13:40": (T0 + 3 * H + 40 * M, MINUTE_S),
    "h09": (T0 - H, HOUR_S),
    "h10": (T0, HOUR_S),
    "h11": (T0 + H, HOUR_S),
    "h11'": (T0 + H, HOUR_S),
    "h12": (T0 + 2 * H, HOUR_S),
    "h13": (T0 + 3 * H, HOUR_S),
}


def test_partial_hours_come_from_minutes_and_whole_hours_from_hours(
        store: ProfileStore) -> None:
    bits = _write_labelled(store, WINDOWS)
    service = _service(store, now=T0 + 5 * H)
    live = service.live("churn", "1.0.0", start=T0 + 20 * M + dt.timedelta(seconds=30),
                        end=T0 + 3 * H + 39 * M + dt.timedelta(seconds=10), reference=None)
    assert (live.start, live.end) == (T0 + 20 * M, T0 + 3 * H + 40 * M)  # whole minutes
    # The minutes inside 11:00-13:00 are in the hour windows already: not read again.
    assert _read_labels(live.header[prof.REQUESTS], bits) == {
        "m10:20", "m10:20'", "m10:59", "h11", "h11'", "h12", "m13:00", "m13:39"}
    assert live.counts is None


@pytest.mark.parametrize(("start", "end", "labels"), [
    (T0 + 20 * M, T0 + 40 * M, {"m10:20", "m10:20'"}),  # within one hour
    (T0 + 59 * M, T0 + H + 31 * M, {"m10:59", "m11:00", "m11:30"}),  # across one boundary
    (T0, T0 + H, {"h10"}),  # exactly one hour
    (T0 + H, T0 + 3 * H, {"h11", "h11'", "h12"}),
    (T0 - M, T0 + H + M, {"m09:59", "h10", "m11:00"}),
    (T0 + 2 * H, T0 + 2 * H, set()),
])
def test_any_range_reads_each_window_at_most_once(
        store: ProfileStore, start: dt.datetime, end: dt.datetime, labels: set[str]) -> None:
    bits = _write_labelled(store, WINDOWS)
    live = _service(store, now=T0 + 5 * H).live("churn", "1.0.0", start=start, end=end,
                                                 reference=None)
    assert _read_labels(live.header[prof.REQUESTS], bits) == labels


def test_a_range_starting_before_the_minute_retention_starts_on_a_whole_hour(
        store: ProfileStore) -> None:
    now = T0 + 3 * 24 * H  # 10:00 three days later
    bits = _write_labelled(store, {
        "h10": (T0, HOUR_S),
        "m10:20": (T0 + 20 * M, MINUTE_S),
        "h11": (T0 + H, HOUR_S),
        "h-day3-08": (now - 2 * H, HOUR_S),
        "h-day3-09": (now - H, HOUR_S),  # the partial last hour: from its minutes
        "m-day3-09:10": (now - 50 * M, MINUTE_S),
        "m-day3-09:30": (now - 30 * M, MINUTE_S),
    })
    assert now - MINUTE_RETENTION > T0 + 20 * M
    live = _service(store, now=now).live("churn", "1.0.0", start=T0 + 20 * M,
                                         end=now - 30 * M, reference=None)
    assert (live.start, live.end) == (T0, now - 30 * M)
    assert _read_labels(live.header[prof.REQUESTS], bits) == {
        "h10", "h11", "h-day3-08", "m-day3-09:10"}


def test_a_range_entirely_before_the_minute_retention_is_counted_in_whole_hours(
        store: ProfileStore) -> None:
    now = T0 + 3 * 24 * H
    bits = _write_labelled(store, {
        "h10": (T0, HOUR_S), "h11": (T0 + H, HOUR_S), "h12": (T0 + 2 * H, HOUR_S),
        "m10:30": (T0 + 30 * M, MINUTE_S), "m12:10": (T0 + 2 * H + 10 * M, MINUTE_S)})
    # What the server's monitoring does every few minutes.
    store.prune(minutes_before=now - MINUTE_RETENTION, hours_before=now - 30 * 24 * H)
    live = _service(store, now=now).live("churn", "1.0.0", start=T0 + 20 * M,
                                         end=T0 + 2 * H + 40 * M, reference=None)
    assert _read_labels(live.header[prof.REQUESTS], bits) == {"h10", "h11", "h12"}
    assert (live.start, live.end) == (T0, T0 + 3 * H)


# --- what a report holds --------------------------------------------------------------------


def _reference(rows: int, seed: int = 1) -> Reference:
    rng = np.random.default_rng(seed)
    return build_reference(
        {"x": rng.normal(0.0, 1.0, rows), "y": rng.exponential(2.0, rows),
         "c": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]),
         "d": rng.choice(["yes", "no"], rows, p=[0.7, 0.3])},
        rng.choice([0, 1], rows, p=[0.6, 0.4]), categorical_predictions=True)


def _live_vector(reference: Reference, rows: int, *, seed: int, shift: bool = False,
                 errors: int = 0) -> np.ndarray:
    """A vector of ``rows`` live rows like the reference's data, or with ``x`` moved by
    one standard deviation and ``c`` reweighted when ``shift``."""
    rng = np.random.default_rng(seed)
    layout = Layout(reference)
    vector = layout.empty()
    layout.add_requests(vector, latencies_s=np.full(rows // 10, 0.01), errors=errors,
                        rows=rows)
    columns = {"x": rng.normal(1.0 if shift else 0.0, 1.0, rows),
               "y": rng.exponential(2.0, rows),
               "c": rng.choice(["a", "b", "c"], rows,
                               p=[0.1, 0.3, 0.6] if shift else [0.5, 0.3, 0.2]),
               "d": rng.choice(["yes", "no"], rows, p=[0.7, 0.3])}
    layout.add_rows(vector, columns, rng.choice([0, 1], rows, p=[0.6, 0.4]))
    return vector


def _check_shape(body: dict[str, Any]) -> None:
    json.dumps(body, allow_nan=False)
    assert REPORT_KEYS | {"requests", "errors", "reference"} <= set(body)
    assert set(body["window"]) == {"start", "end"}
    for feature in body["features"]:
        assert set(feature) >= FEATURE_KEYS
    if body["prediction"] is not None:
        assert set(body["prediction"]) >= PREDICTION_KEYS


@pytest.mark.parametrize(("reference_rows", "numeric_test", "tests"), [
    (5000, "wasserstein", {"x": "wasserstein", "y": "wasserstein", "c": "jensenshannon",
                           "d": "jensenshannon"}),
    (800, "ks", {"x": "ks", "y": "ks", "c": "chisquare", "d": "z"}),
])
def test_shifted_columns_drift_and_the_others_do_not(
        store: ProfileStore, reference_rows: int, numeric_test: str,
        tests: dict[str, str]) -> None:
    reference = _reference(reference_rows)
    digest = reference.digest
    # Two workers in one minute, another minute, and the next hour: 4,000 live rows, read
    # from the minutes of a partial hour and from a whole hour.
    _write_with_hours(store, [
        _window(T0 + 5 * M, _live_vector(reference, 500, seed=2, shift=True), digest=digest),
        _window(T0 + 5 * M, _live_vector(reference, 500, seed=3, shift=True), digest=digest,
                worker="w2"),
        _window(T0 + 6 * M, _live_vector(reference, 1000, seed=4, shift=True, errors=3),
                digest=digest),
        _window(T0 + H + 10 * M, _live_vector(reference, 2000, seed=5, shift=True),
                digest=digest),
    ])
    service = _service(store, now=T0 + 3 * H,
                       references={("churn", "1.0.0"): _stored(reference)})
    report = service.drift("churn", "1.0.0", start=T0 + 5 * M, end=T0 + 2 * H)
    assert (report.requests, report.errors, report.rows) == (400, 3, 4000)
    assert {f.name: f.test for f in report.features} == tests
    assert {f.name for f in report.features if f.drifted} == {"x", "c"}
    assert all(f.rows == 4000 for f in report.features)
    assert report.dataset_drift is True and report.drift_share == 0.5
    assert report.prediction is not None and not report.prediction.drifted
    body = report.to_dict()
    _check_shape(body)
    assert body["reference_rows"] == reference_rows
    assert body["reference"]["digest"] == digest
    assert body["reference"]["source"] == "train.csv"
    assert [f["name"] for f in body["features"] if f["drifted"]] == ["x", "c"]
    assert body["features"][0]["test"] == numeric_test
    assert "message" not in body
    assert (dt.datetime.fromisoformat(body["window"]["start"]),
            dt.datetime.fromisoformat(body["window"]["end"])) == (T0 + 5 * M, T0 + 2 * H)


def test_the_same_data_does_not_drift(store: ProfileStore) -> None:
    reference = _reference(5000)
    _write_with_hours(store, [_window(T0, _live_vector(reference, 4000, seed=9),
                                     digest=reference.digest)])
    service = _service(store, now=T0 + H, references={("churn", "1.0.0"): _stored(reference)})
    report = service.drift("churn", "1.0.0", start=T0, end=T0 + H)
    assert [f.name for f in report.features if f.drifted] == []
    assert report.dataset_drift is False and report.drift_share == 0.0
    _check_shape(report.to_dict())


def test_vectors_of_another_reference_count_in_requests_errors_and_latency_only(
        store: ProfileStore) -> None:
    reference, earlier = _reference(5000), _reference(3000, seed=7)
    current = _live_vector(reference, 1000, seed=2, errors=1)
    other = _live_vector(earlier, 600, seed=3, errors=2)
    header_only = np.zeros(prof.HEADER)
    header_only[[prof.REQUESTS, prof.ERRORS, prof.ROWS, prof.LATENCY_SUM]] = [7, 5, 9, 0.5]
    _write_with_hours(store, [
        _window(T0, current, digest=reference.digest),
        _window(T0, other, digest=earlier.digest, worker="w2"),
        _window(T0 + M, header_only, digest="none"),
    ])
    service = _service(store, now=T0 + H, references={("churn", "1.0.0"): _stored(reference)})
    live = service.live("churn", "1.0.0", start=T0, end=T0 + H, reference=reference)
    assert live.counts is not None
    np.testing.assert_array_equal(live.counts, current)
    np.testing.assert_allclose(live.header,
                               current[:prof.HEADER] + other[:prof.HEADER] + header_only)
    report = service.drift("churn", "1.0.0", start=T0, end=T0 + H)
    assert (report.requests, report.errors, report.rows) == (100 + 60 + 7, 1 + 2 + 5, 1000)
    assert all(f.rows == 1000 for f in report.features)


def test_a_version_without_a_reference_reports_traffic_and_says_how_to_attach_one(
        store: ProfileStore) -> None:
    header = np.zeros(prof.HEADER)
    header[[prof.REQUESTS, prof.ERRORS, prof.ROWS]] = [12, 2, 30]
    _write_with_hours(store, [_window(T0 + 10 * M, header)])
    report = _service(store, now=T0 + H).drift("churn", "1.0.0", start=T0, end=T0 + H)
    assert isinstance(report, DriftReport)
    assert report.reference is None and report.features == () and report.prediction is None
    assert (report.requests, report.errors, report.rows) == (12, 2, 0)
    body = report.to_dict()
    _check_shape(body)
    assert body["reference"] is None and body["reference_rows"] is None
    assert body["dataset_drift"] is None and body["drift_share"] is None
    assert body["features"] == [] and body["prediction"] is None
    assert "modelhost monitor reference churn 1.0.0" in body["message"]


def test_a_reference_without_traffic_reports_no_statistics(store: ProfileStore) -> None:
    reference = _reference(5000)
    service = _service(store, now=T0 + H, references={("churn", "1.0.0"): _stored(reference)})
    report = service.drift("churn", "1.0.0", start=T0, end=T0 + H)
    assert (report.requests, report.rows) == (0, 0)
    assert all(f.statistic is None and not f.drifted for f in report.features)
    assert report.dataset_drift is False
    _check_shape(report.to_dict())
