"""The monitoring report: its numbers against DriftService and performance() on traffic
written through the real stores (LiveProfiles' windows, the prediction log, feedback)
on a migrated SQLite database, and the HTML page: self-contained, escaped, readable for
a version without a reference and for an empty window; and ``modelhost monitor report``."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from modelhost import Client, Settings
from modelhost.cli import run
from modelhost.monitoring.drift import DriftService
from modelhost.monitoring.performance import performance
from modelhost.monitoring.profiles import LiveProfiles
from modelhost.monitoring.report import (
    MAX_BUCKETS,
    Report,
    bucket_edges,
    bucket_width,
    build_report,
    drift_score,
    latency_quantile,
)
from modelhost.monitoring.report_html import render_html
from modelhost.stats import profile as prof
from modelhost.stats.drift import ColumnDrift
from modelhost.stats.profile import LATENCY_EDGES_S, Layout, Reference
from modelhost.store.monitoring import Label, LogEntry
from tests.fixtures_models import iris, iris_model

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 21, 10, 17, 30, tzinfo=UTC)
H = dt.timedelta(hours=1)
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


# --- traffic, as the servers write it -----------------------------------------------------

@dataclass
class _Answered:
    """The fields of serving's Observation that live profiles read."""

    model: str
    version: str
    rows: int
    inputs: Any
    predictions: Any
    status: int = 200
    latency_s: float = 0.003
    at: float = 0.0  # when answered
    arm: Any = None
    request_id: str = ""
    probabilities: Any = None


@dataclass
class Traffic:
    """What :func:`simulate` sent: totals to check the report against."""

    requests: int = 0
    errors: int = 0
    rows: int = 0
    labelled: int = 0
    latencies: list[float] = field(default_factory=list)


def simulate(client: Client, *, start: dt.datetime, end: dt.datetime, version: str = "1.0.0",
             per_hour: float = 8.0, shift_from: dt.datetime | None = None,
             feedback: float = 0.4, seed: int = 0, model: str = "iris",
             columns: Sequence[str] = COLUMNS) -> Traffic:
    """Requests of iris inputs between ``start`` and ``end``, counted by a worker's
    LiveProfiles and logged with their predictions (labels for a share ``feedback`` of
    them); from ``shift_from`` on, petal_length moves up by a growing amount and
    sepal_width by 1 (the labels stay the true species, so accuracy falls)."""
    X, y = iris()
    X = X.set_axis(list(columns), axis=1)
    fitted = iris_model()
    rng = np.random.default_rng(seed)
    clock = [start.timestamp()]

    def reference(m: str, v: str) -> Reference | None:
        stored = client.registry.reference(m, v)
        return Reference.from_dict(stored.profile) if stored is not None else None

    live = LiveProfiles(client.profiles, references=reference, clock=lambda: clock[0])
    sent = Traffic()
    hour = start
    while hour < end:
        until = min(hour + H, end)
        span = (until - hour).total_seconds()
        times = np.sort(hour.timestamp() + rng.uniform(0, span, rng.poisson(per_hour)))
        entries: list[LogEntry] = []
        labels: list[Label] = []
        for at in times:
            when = dt.datetime.fromtimestamp(at, UTC)
            clock[0] = float(at)
            picked = rng.integers(0, len(X), size=int(rng.integers(1, 9)))
            frame = X.iloc[picked].reset_index(drop=True)
            if shift_from is not None and when >= shift_from:
                grown = min(1.0, (when - shift_from) / (end - shift_from) * 2)
                frame[columns[2]] = frame[columns[2]] + 3.0 * grown
                frame[columns[1]] = frame[columns[1]] + 1.0
            failed = rng.random() < 0.03
            latency = float(rng.lognormal(np.log(0.004), 0.5)) + (0.05 if failed else 0.0)
            sent.requests += 1
            sent.rows += len(frame)
            sent.latencies.append(latency)
            if failed:
                sent.errors += 1
                live.observe(_Answered(model, version, len(frame), None, None, 500, latency,
                                       at=float(at)))
                continue
            named = frame.set_axis(COLUMNS, axis=1)
            predicted = fitted.predict(named)
            live.observe(_Answered(model, version, len(frame), frame, predicted,
                                   latency_s=latency, at=float(at)))
            request_id = f"r{sent.requests}"
            outputs = {"predictions": predicted.tolist(),
                       "probabilities": fitted.predict_proba(named).round(4).tolist()}
            entries.append(LogEntry(request_id, model, version, "stable", when, len(frame),
                                    "[]", orjson.dumps(outputs).decode()))
            if rng.random() < feedback:
                truth = y.iloc[picked].tolist()
                labels.append(Label(request_id, model, version, orjson.dumps(truth).decode()))
                sent.labelled += len(truth)
        client.predictions.append(entries)
        client.predictions.record_feedback(labels, now=until)
        clock[0] = until.timestamp()
        live.flush()
        hour = until
    return sent


def register_iris(client: Client, *, reference: bool = True, name: str = "iris",
                  columns: Sequence[str] = COLUMNS) -> None:
    """``name`` 1.0.0 (with reference data unless told) and 1.0.1 (without)."""
    X, y = iris()
    X = X.set_axis(list(columns), axis=1)
    fitted = iris_model() if list(columns) == COLUMNS else _fit(X, y)
    registry = client.registry
    registry.register(fitted, name=name, input_example=X.head(5),
                      reference_data=X.assign(target=y) if reference else None,
                      metrics={"accuracy": 0.97})
    registry.register(fitted, name=name, input_example=X.head(5))


def _fit(X: pd.DataFrame, y: pd.Series) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(X, y)


def service(client: Client, now: dt.datetime) -> DriftService:
    return DriftService(client.profiles, references=client.registry.reference,
                        now=lambda: now)


def report_of(client: Client, *, span: dt.timedelta, now: dt.datetime = NOW,
              version: str = "1.0.0", window: str | None = None) -> Report:
    return build_report(service(client, now), client.predictions, model="iris",
                        version=version, start=now - span, end=now, window=window,
                        registered={"accuracy": 0.97})


# --- buckets and small numbers ------------------------------------------------------------

@pytest.mark.parametrize(("span", "width", "count"), [
    (dt.timedelta(minutes=30), 60, 30),
    (H, 60, 60),
    (12 * H, 900, 48),
    (24 * H, 1800, 48),
    (48 * H, 3600, 48),
    (7 * 24 * H, 3 * 3600, 56),
    (30 * 24 * H, 43200, 60),
])
def test_bucket_widths_cut_the_window_in_at_most_60(span: dt.timedelta, width: int,
                                                   count: int) -> None:
    assert bucket_width(span) == width
    end = dt.datetime(2026, 11, 21, 12, 10, tzinfo=UTC)
    edges = bucket_edges(end - span, end, width)
    assert len(edges) in (count, count + 1) and len(edges) <= MAX_BUCKETS + 1
    assert edges[0][0] == end - span and edges[-1][1] == end
    assert all(a < b and b == c for (a, b), (c, _) in itertools.pairwise(edges))


def test_the_longest_windows_get_buckets_of_whole_weeks() -> None:
    assert bucket_width(dt.timedelta(weeks=5218)) == 87 * 604800  # 100 years: 60 buckets
    assert bucket_width(dt.timedelta(weeks=60)) == 604800


def test_bucket_edges_fall_on_multiples_of_the_width() -> None:
    start = dt.datetime(2026, 11, 21, 9, 17, tzinfo=UTC)
    end = dt.datetime(2026, 11, 21, 12, 5, tzinfo=UTC)
    edges = bucket_edges(start, end, 3600)
    assert [(a.strftime("%H:%M"), b.strftime("%H:%M")) for a, b in edges] == [
        ("09:17", "10:00"), ("10:00", "11:00"), ("11:00", "12:00"), ("12:00", "12:05")]


def test_latency_quantile_is_within_a_bin_of_numpy() -> None:
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(np.log(0.02), 0.8, 5000)
    vector = Layout(None).empty()
    Layout(None).add_requests(vector, latencies_s=latencies, errors=0, rows=5000)
    ratio = LATENCY_EDGES_S[1] / LATENCY_EDGES_S[0]
    for q in (0.5, 0.9, 0.99):
        got = latency_quantile(vector[prof.LATENCY_BINS:prof.HEADER], q)
        assert got is not None
        assert 1 / ratio < got / np.quantile(latencies, q) < ratio
    assert latency_quantile(np.zeros(prof.HEADER - prof.LATENCY_BINS), 0.99) is None
    every = Layout(None).empty()
    Layout(None).add_requests(every, latencies_s=np.array([50.0, 1e-5]), errors=0, rows=2)
    assert latency_quantile(every[prof.LATENCY_BINS:prof.HEADER], 0.99) == 30.0
    assert latency_quantile(every[prof.LATENCY_BINS:prof.HEADER], 0.1) == 1e-4


def _drift(test: str, statistic: float | None, p_value: float | None, threshold: float,
           drifted: bool, rows: int = 10) -> ColumnDrift:
    return ColumnDrift("x", "numeric", test, statistic, p_value, threshold, drifted, None,
                       rows, 0, 0)


def test_drift_score_is_one_at_the_threshold_of_every_test() -> None:
    assert drift_score(_drift("ks", 0.3, 0.05, 0.05, False)) == pytest.approx(1.0)
    assert drift_score(_drift("ks", 0.5, 0.0025, 0.05, True)) == pytest.approx(2.0)
    assert drift_score(_drift("ks", 0.0, 1.0, 0.05, False)) == 0.0
    assert drift_score(_drift("chisquare", None, 0.0, 0.05, True)) == float("inf")
    assert drift_score(_drift("wasserstein", 0.25, None, 0.1, True)) == pytest.approx(2.5)
    assert drift_score(_drift("ks", None, None, 0.05, False, rows=0)) is None


# --- the report's numbers -----------------------------------------------------------------

@dataclass
class Served:
    client: Client
    sent: Traffic


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           sqlite_template: Path) -> Iterator[Served]:
    """iris 1.0.0 with a reference: six hours of traffic, shifted in the last three
    (written once for the tests that only read it)."""
    folder = tmp_path_factory.mktemp("served")
    shutil.copy(sqlite_template, folder / "modelhost.db")
    settings = Settings(home=folder / "home", db_url=f"sqlite:///{folder / 'modelhost.db'}",
                        artifacts=str(folder / "artifacts"))
    with Client(settings) as client:
        register_iris(client)
        yield Served(client, simulate(client, start=NOW - 6 * H, end=NOW, per_hour=40,
                                      shift_from=NOW - 3 * H))


def test_the_summary_is_the_drift_service_and_performance_of_the_window(
        served: Served) -> None:
    sqlite_client, traffic = served.client, served.sent
    report = report_of(sqlite_client, span=6 * H, window="6h")
    expected = service(sqlite_client, NOW).drift("iris", "1.0.0", start=NOW - 6 * H,
                                                 end=NOW)
    assert report.drift == expected
    assert (report.start, report.end) == (expected.start, expected.end)
    assert (report.drift.requests, report.drift.errors, report.rows) == (
        traffic.requests, traffic.errors, traffic.rows)
    assert report.drift.dataset_drift is True
    assert {f.name for f in report.drift.features if f.drifted} == {"sepal_width",
                                                                   "petal_length"}
    live = performance(sqlite_client.predictions, model="iris", version="1.0.0",
                       start=report.start, end=report.end, registered={"accuracy": 0.97})
    assert report.performance == live
    assert report.performance.labelled == traffic.labelled
    assert report.quality_metric == "accuracy"
    assert report.latency_mean_s == pytest.approx(np.mean(traffic.latencies))
    p99 = report.latency_p99_s
    assert p99 is not None and 0.75 < p99 / np.quantile(traffic.latencies, 0.99) < 1.3


def test_buckets_add_up_to_the_window_and_each_is_its_own_query(
        served: Served) -> None:
    sqlite_client, traffic = served.client, served.sent
    report = report_of(sqlite_client, span=6 * H)
    assert report.bucket_s == 600
    assert 36 <= len(report.buckets) <= 37
    assert report.buckets[0].start == report.start
    assert report.buckets[-1].end == report.end
    assert sum(b.requests for b in report.buckets) == traffic.requests
    assert sum(b.errors for b in report.buckets) == traffic.errors
    assert sum(b.rows for b in report.buckets) == traffic.rows
    assert sum(b.labelled for b in report.buckets) == traffic.labelled
    drift = service(sqlite_client, NOW)
    for b in report.buckets[::7]:
        alone = drift.drift("iris", "1.0.0", start=b.start, end=b.end)
        assert (b.requests, b.errors) == (alone.requests, alone.errors)
        assert b.features == alone.features and b.prediction == alone.prediction
        assert b.drift_share == (alone.drift_share if alone.rows else None)
        quality = performance(sqlite_client.predictions, model="iris", version="1.0.0",
                              start=b.start, end=b.end)
        assert b.labelled == quality.labelled
        assert b.quality == quality.metrics.get("accuracy")
        assert b.error_rate == (b.errors / b.requests if b.requests else None)
    # The shift shows in the last buckets only, and accuracy falls with it.
    early = [b for b in report.buckets if b.end <= NOW - 3 * H and b.drift_share is not None]
    late = [b for b in report.buckets if b.start >= NOW - 2 * H and b.drift_share is not None]
    assert early and late
    # Buckets of a few dozen rows: a feature may drift by chance (5% of the time).
    assert np.mean([b.drift_share for b in early]) < 0.1
    assert np.mean([b.drift_share >= 0.5 for b in late]) > 0.8
    assert np.mean([b.quality for b in early if b.quality is not None]) > np.mean(
        [b.quality for b in late if b.quality is not None])


def test_distributions_are_the_reference_and_live_shares_on_its_bins(
        served: Served) -> None:
    sqlite_client, traffic = served.client, served.sent
    report = report_of(sqlite_client, span=6 * H)
    stored = sqlite_client.registry.reference("iris", "1.0.0")
    assert stored is not None
    reference = Reference.from_dict(stored.profile)
    assert [d.name for d in report.features] == COLUMNS
    for dist, column, drift in zip(report.features, reference.features,
                                   report.drift.features, strict=True):
        assert dist.kind == "numeric" and dist.drift == drift
        assert dist.edges == column.edges
        assert len(dist.labels) == len(dist.reference) == len(dist.live) == \
            len(column.counts) + 2
        assert dist.labels[0] == f"< {column.edges[0]:g}"
        assert dist.labels[-1] == f"> {column.edges[-1]:g}"
        assert sum(dist.reference) == pytest.approx(1.0)
        assert dist.reference[1:-1] == pytest.approx(
            np.asarray(column.counts) / sum(column.counts))
        assert sum(dist.live) == pytest.approx(1.0)
        assert dist.live_rows == drift.rows == traffic.rows - _failed_rows(report)
        assert round(dist.live[0] * dist.live_rows + dist.live[-1] * dist.live_rows) == \
            drift.out_of_range
    shifted = report.features[2]  # petal_length, moved up by up to 3 cm
    assert shifted.live[-1] > 0.1
    prediction = report.prediction
    assert prediction is not None and prediction.kind == "categorical"
    assert set(prediction.labels[:3]) == {"0", "1", "2"}  # most frequent first
    assert prediction.labels[3:] == ("(other)", "(unseen)")
    assert prediction.reference[-1] == 0.0 and sum(prediction.live) == pytest.approx(1.0)


def _failed_rows(report: Report) -> int:
    return report.rows - report.drift.rows


def test_a_version_without_reference_still_shows_traffic_and_says_so(
        sqlite_client: Client) -> None:
    register_iris(sqlite_client)
    sent = simulate(sqlite_client, start=NOW - 3 * H, end=NOW, version="1.0.1")
    report = report_of(sqlite_client, span=3 * H, version="1.0.1", window="3h")
    assert report.drift.reference is None
    assert report.features == () and report.prediction is None
    assert (report.drift.requests, report.rows) == (sent.requests, sent.rows)
    assert all(b.features == () and b.drift_share is None for b in report.buckets)
    page = render_html(report)
    assert "No reference profile" in page
    assert "modelhost monitor reference iris 1.0.1 --data FILE" in page
    assert 'data-chart="requests"' in page and 'data-chart="latency"' in page
    assert 'data-chart="drift"' not in page and "distribution-" not in page
    assert f"{sent.requests:,} requests" in page


def test_an_empty_window_renders_with_no_data(sqlite_client: Client) -> None:
    register_iris(sqlite_client)
    report = report_of(sqlite_client, span=H, window="1h")
    assert (report.drift.requests, report.rows, report.drift.rows) == (0, 0, 0)
    assert report.latency_mean_s is None and report.latency_p99_s is None
    assert report.quality_metric is None and report.performance.labelled == 0
    assert len(report.buckets) == 61  # 09:17 to 10:18: the hour, widened to minutes
    assert all(b.requests == 0 and b.error_rate is None and b.latency_p99_s is None
               and b.drift_share is None and b.quality is None for b in report.buckets)
    assert all(d.live_rows == 0 and not any(d.live) for d in report.features)
    page = render_html(report)
    _check_html(page)
    assert "no drift to measure" in page
    assert "No feedback in this window" in page
    assert page.count("no data in this window") >= 3  # error rate, latency, drift share
    assert page.count("no live data") == 5  # four features and the predictions


# --- the page -----------------------------------------------------------------------------

class _Page(HTMLParser):
    """Tags, attributes and text of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _check_html(page: str) -> _Page:
    """A page with no script, no external reference, balanced tags."""
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    names = [tag for tag, _ in parsed.tags]
    assert "script" not in names and "iframe" not in names and "link" not in names
    assert "img" not in names  # charts are inline SVG, nothing is loaded
    for tag, attrs in parsed.tags:
        for key, value in attrs.items():
            assert not key.startswith("on"), (tag, key)  # no event handler, no script
            if key in ("src", "href", "xlink:href", "action", "data", "poster"):
                assert value is not None and not re.match(r"\s*(https?:)?//", value), value
    assert "http://" not in page and "https://" not in page
    assert re.search(r"url\(", page) is None and "@import" not in page
    return parsed


def test_the_page_is_self_contained_with_a_chart_per_plot(
        served: Served) -> None:
    sqlite_client, traffic = served.client, served.sent
    page = render_html(report_of(sqlite_client, span=6 * H, window="6h"))
    parsed = _check_html(page)
    charts = [attrs["data-chart"] for tag, attrs in parsed.tags
              if tag == "svg" and attrs.get("class") == "chart"]
    assert charts == ["requests", "errors", "latency", "drift", "drift-share",
                      *["distribution-numeric"] * 4, "distribution-categorical", "quality"]
    text = " ".join(parsed.text)
    assert "iris 1.0.0, last 6h:" in text and "DATA DRIFT" in text
    for name in COLUMNS:
        assert name in text
    titles = sum(1 for tag, _ in parsed.tags if tag == "title")
    assert titles > 300  # every bar, point and cell has its numbers on hover
    assert f"{traffic.requests:,}" in text


def test_user_strings_are_escaped(sqlite_client: Client) -> None:
    evil = "<script>alert(1)</script>"
    columns = [evil, "sepal_width", 'petal "length" & <b>', "petal_width"]
    register_iris(sqlite_client, reference=False, columns=columns)
    sqlite_client.registry.attach_reference(
        "iris", "1.0.0", iris()[0].set_axis(columns, axis=1), source=f"file {evil}.csv")
    simulate(sqlite_client, start=NOW - H, end=NOW, per_hour=30, columns=columns,
             shift_from=NOW - dt.timedelta(minutes=30))
    report = report_of(sqlite_client, span=H)
    assert report.features[0].name == evil
    page = render_html(report)
    parsed = _check_html(page)
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "petal &quot;length&quot; &amp; &lt;b&gt;" in page
    assert not any(tag in ("script", "b") for tag, _ in parsed.tags)
    text = "".join(parsed.text)
    assert evil in text and f"file {evil}.csv" in text  # shown as text, as it is


def test_categories_are_escaped_and_few_are_drawn(sqlite_client: Client) -> None:
    from modelhost.monitoring.report import Distribution
    from modelhost.monitoring.report_html import _category_chart

    labels = (*(f"<i>cat {i}</i>" for i in range(30)), "(other)", "(unseen)")
    shares = (*(1 / 30 for _ in range(30)), 0.0, 0.0)
    drift = ColumnDrift("c", "categorical", "chisquare", 1.0, 0.5, 0.05, False, 0.0, 30, 0,
                        0)
    svg = _category_chart(Distribution("c", "categorical", labels, shares, shares, 30, (),
                                       drift))
    assert "<i>" not in svg and "&lt;i&gt;cat 0&lt;/i&gt;" in svg
    assert svg.count('class="hover"') == 12  # eleven categories and "19 more"
    assert "19 more" in svg


def test_with_many_features_the_20_that_drift_most_are_drawn() -> None:
    from modelhost.monitoring.report import MAX_FEATURE_CHARTS
    from modelhost.monitoring.report_html import _most_drifted

    columns = [ColumnDrift(f"f{i}", "numeric", "wasserstein", i / 100, None, 0.1, i >= 10,
                           None, 50, 0, 0) for i in range(30)]
    assert _most_drifted(columns[:20]) == columns[:20]  # all, in their order
    shown = _most_drifted([*columns[:5], ColumnDrift("empty", "numeric", "ks", None, None,
                                                     0.05, False, None, 0, 0, 0),
                           *columns[5:]])
    assert len(shown) == MAX_FEATURE_CHARTS == 20
    assert [c.name for c in shown] == [f"f{i}" for i in range(29, 9, -1)]


# --- the command --------------------------------------------------------------------------

@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_monitor_report_writes_the_page(home: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    now = dt.datetime.now(UTC)
    with Client() as client:
        register_iris(client)
        client.registry.transition("iris", "1.0.0", "staging")
        client.registry.transition("iris", "1.0.0", "production")
        sent = simulate(client, start=now - 3 * H, end=now - dt.timedelta(minutes=1))
    code, out, err = cli(capsys, "monitor", "report", "iris", "--window", "1d")
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    size = round(len(page.encode()) / 1024)
    assert out.strip() == f"wrote report.html ({size} KB): iris 1.0.0, last 1d"
    assert f"{sent.requests:,} requests" in page and "last 1d" in page
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) & 0o044  # not 0600
    # Another version, window and file; the old file is replaced in one step.
    target = tmp_path / "out" / "iris.html"
    target.parent.mkdir()
    target.write_text("old")
    code, out, err = cli(capsys, "monitor", "report", "iris", "--version", "1.0.1",
                         "--window", "2h", "-o", target)
    assert code == 0, err
    assert out.startswith(f"wrote {target} (") and out.strip().endswith(
        "iris 1.0.1, last 2h")
    assert "No reference profile" in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["iris.html"]  # no temp


@pytest.mark.parametrize(("args", "code", "message"), [
    (["monitor", "report", "nope"], 3,
     "error: model 'nope' not found; see 'modelhost models list'"),
    (["monitor", "report", "iris", "--version", "9.9.9"], 3,
     "model 'iris' has no version or alias '9.9.9'"),
    (["monitor", "report", "iris", "--window", "soon"], 1, "'soon' is not a duration"),
    (["monitor", "report", "iris", "--window", "999999w"], 1, "longer than 100 years"),
    (["monitor", "report", "iris", "-o", "missing/dir/report.html"], 1,
     "error: No such file or directory"),
    (["monitor", "report"], 2, "Missing argument"),
])
def test_report_errors_have_exit_codes_and_one_line(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        code: int, message: str) -> None:
    with Client() as client:
        register_iris(client)
        client.registry.transition("iris", "1.0.0", "staging")
        client.registry.transition("iris", "1.0.0", "production")
    got, _, err = cli(capsys, *args)
    assert got == code, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or code == 2
    assert not (tmp_path / "report.html").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.html")]


def test_json_of_the_drift_command_agrees_with_the_report(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The page's summary line is the one ``monitor drift`` prints, on the same data."""
    now = dt.datetime.now(UTC)
    with Client() as client:
        register_iris(client)
        client.registry.transition("iris", "1.0.0", "staging")
        client.registry.transition("iris", "1.0.0", "production")
        simulate(client, start=now - 50 * dt.timedelta(minutes=1),
                 end=now - dt.timedelta(minutes=2), per_hour=40,
                 shift_from=now - dt.timedelta(minutes=30))
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--window", "1h", "--json")
    assert code == 0
    body = json.loads(out)
    assert cli(capsys, "monitor", "report", "iris", "--window", "1h")[0] == 0
    page = (tmp_path / "report.html").read_text()
    drifted = sum(f["drifted"] for f in body["features"])
    verdict = "DATA DRIFT" if body["dataset_drift"] else "no data drift"
    assert (f"iris 1.0.0, last 1h: {body['requests']:,} requests" in page
            and f"{verdict}, {drifted} of 4 features drifted" in page)
