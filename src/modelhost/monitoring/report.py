"""The monitoring report of a version: one self-contained HTML page over a time window.

:func:`build_report` gathers the numbers into a :class:`Report`: the drift of the whole
window (``DriftService.drift``), each column's reference and live shares on the
reference's bins, and the window cut into buckets (24 to 60 of them for most windows:
minutes for an hour, half hours for a day, three hours for a week), each with its
requests, errors, latencies, per-column drift and live quality (``performance``).
Every number is a sum of the workers' windows or comes from the prediction log, so a
report costs a few queries per bucket whatever the traffic.

:func:`modelhost.monitoring.report_html.render_html` draws it as one HTML page.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelhost.monitoring.drift import DriftReport, DriftService
from modelhost.monitoring.performance import Performance, performance
from modelhost.stats import profile as prof
from modelhost.stats.drift import ColumnDrift, column_drift, dataset_drift
from modelhost.stats.profile import (
    CategoricalProfile,
    ColumnProfile,
    Layout,
    NumericProfile,
    Reference,
    latency_quantile,
)
from modelhost.store.monitoring import PredictionLogStore

MAX_BUCKETS = 60
# Bucket widths, seconds: the narrowest that cuts the window in at most MAX_BUCKETS.
# Wider than two days' windows get whole hours at least, as the minute windows that
# finer buckets would need are kept two days only (``drift.MINUTE_RETENTION``).
BUCKET_WIDTHS_S: tuple[int, ...] = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                                    21600, 43200, 86400, 172800, 604800)
MAX_FEATURE_CHARTS = 20  # distributions and drift rows drawn; the drift table lists all
MAX_CATEGORIES = 12  # bars of a categorical chart; the rest are summed in one bar

_Floats = npt.NDArray[np.float64]


# --- the data model -----------------------------------------------------------------------

@dataclass(frozen=True)
class Distribution:
    """One column's reference and live shares on the reference's bins.

    Numeric columns: the values below the reference's range, each quantile bin, the
    values above (``edges`` are the bins' edges). Categorical ones: each category,
    ``(other)`` (known categories beyond the most frequent), ``(unseen)`` (categories
    the reference never had). Shares leave the nulls out, as the drift tests do.
    """

    name: str
    kind: str  # "numeric" | "categorical"
    labels: tuple[str, ...]
    reference: tuple[float, ...]
    live: tuple[float, ...]
    live_rows: int
    edges: tuple[float, ...]  # numeric columns only
    drift: ColumnDrift


@dataclass(frozen=True)
class Bucket:
    """The traffic, drift and quality of one part of the window, [start, end)."""

    start: dt.datetime
    end: dt.datetime
    requests: int
    errors: int
    rows: int  # rows of every request (not only the profiled ones)
    latency_mean_s: float | None
    latency_p99_s: float | None  # from the latency histogram (:func:`latency_quantile`)
    features: tuple[ColumnDrift, ...]  # in the reference's order; empty without one
    prediction: ColumnDrift | None
    drift_share: float | None  # None: no profiled rows
    labelled: int  # rows with feedback
    quality: float | None  # the report's quality metric over the labelled rows

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Report:
    model: str
    version: str
    window: str  # as asked, e.g. "7d"
    generated_at: dt.datetime
    drift: DriftReport  # the whole window; its start and end are the report's
    rows: int  # rows of every request
    latency_mean_s: float | None
    latency_p99_s: float | None
    features: tuple[Distribution, ...]  # in the reference's order; empty without one
    prediction: Distribution | None
    performance: Performance
    quality_metric: str | None  # "accuracy" (classification), "mae" (regression), None
    bucket_s: int
    buckets: tuple[Bucket, ...]

    @property
    def start(self) -> dt.datetime:
        return self.drift.start

    @property
    def end(self) -> dt.datetime:
        return self.drift.end


def build_report(drift: DriftService, predictions: PredictionLogStore, *, model: str,
                 version: str, start: dt.datetime, end: dt.datetime,
                 window: str | None = None,
                 registered: Mapping[str, float] | None = None) -> Report:
    """The report of ``model`` ``version`` over [start, end) (widened to whole minutes,
    as ``DriftService.drift`` does). ``window`` names it ("7d"); ``registered`` are the
    version's metrics at registration, compared with the live ones.

    Raises what ``DriftService.drift`` raises (an unknown model or version).
    """
    summary = drift.drift(model, version, start=start, end=end)
    reference = Reference.from_dict(summary.reference.profile) \
        if summary.reference is not None else None
    whole = drift.live(model, version, start=summary.start, end=summary.end,
                       reference=reference)
    overall = performance(predictions, model=model, version=version, start=summary.start,
                          end=summary.end, registered=registered)
    metric = {"classification": "accuracy", "regression": "mae"}.get(overall.task or "")
    width = bucket_width(end - start)  # the span asked, before widening to minutes
    layout = Layout(reference) if reference is not None else None
    buckets = tuple(
        _bucket(drift, predictions, model=model, version=version, start=b0, end=b1,
                layout=layout, metric=metric)
        for b0, b1 in bucket_edges(summary.start, summary.end, width))
    features: tuple[Distribution, ...] = ()
    prediction = None
    if reference is not None and layout is not None and whole.counts is not None:
        features = tuple(_distribution(c, layout.column_counts(whole.counts, c), d)
                         for c, d in zip(reference.features, summary.features, strict=True))
        if reference.prediction is not None and summary.prediction is not None:
            prediction = _distribution(reference.prediction, layout.column_counts(
                whole.counts, reference.prediction, prediction=True), summary.prediction)
    header = whole.header
    return Report(
        model=model, version=version,
        window=window or format_duration(summary.end - summary.start), generated_at=end,
        drift=summary, rows=int(header[prof.ROWS]),
        latency_mean_s=_mean_latency(header), latency_p99_s=latency_quantile(
            header[prof.LATENCY_BINS:prof.HEADER], 0.99),
        features=features, prediction=prediction, performance=overall,
        quality_metric=metric, bucket_s=width, buckets=buckets)


def bucket_width(span: dt.timedelta) -> int:
    """Seconds per bucket: the narrowest of ``BUCKET_WIDTHS_S`` (or whole weeks) that
    cuts ``span`` in at most ``MAX_BUCKETS``."""
    seconds = max(1.0, span.total_seconds())
    for width in BUCKET_WIDTHS_S:
        if math.ceil(seconds / width) <= MAX_BUCKETS:
            return width
    week = BUCKET_WIDTHS_S[-1]
    return week * math.ceil(seconds / (MAX_BUCKETS * week))


def bucket_edges(start: dt.datetime, end: dt.datetime,
                 width: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end) cut at the multiples of ``width`` seconds since the epoch (so that
    hour buckets are the stored hour windows); the first and last may be partial."""
    first = int(start.timestamp())
    last = int(end.timestamp())
    cuts = [first, *range(first - first % width + width, last, width), last]
    utc = dt.timezone.utc
    return [(dt.datetime.fromtimestamp(a, utc), dt.datetime.fromtimestamp(b, utc))
            for a, b in itertools.pairwise(cuts) if b > a]


def drift_score(column: ColumnDrift) -> float | None:
    """How far a column went towards drifting, on one scale for every test: 1 at the
    test's threshold, above 1 drifted. Distances: ``statistic / threshold``; tests:
    ``log(p) / log(threshold)`` (p = 0.05 gives 1, p = 0.0025 gives 2, p = 0 infinity).
    None when there were no live values."""
    if column.p_value is not None:
        return math.inf if column.p_value <= 0 else max(
            0.0, math.log(column.p_value) / math.log(column.threshold))
    if column.statistic is None:
        return math.inf if column.rows > 0 and column.drifted else None
    return column.statistic / column.threshold


def _bucket(drift: DriftService, predictions: PredictionLogStore, *, model: str,
            version: str, start: dt.datetime, end: dt.datetime,
            layout: Layout | None, metric: str | None) -> Bucket:
    reference = layout.reference if layout is not None else None
    live = drift.live(model, version, start=start, end=end, reference=reference)
    header = live.header
    features: tuple[ColumnDrift, ...] = ()
    prediction = None
    share = None
    if reference is not None and layout is not None and live.counts is not None:
        features = tuple(column_drift(c, layout.column_counts(live.counts, c))
                         for c in reference.features)
        if reference.prediction is not None:
            prediction = column_drift(reference.prediction, layout.column_counts(
                live.counts, reference.prediction, prediction=True))
        if live.counts[prof.ROWS] > 0 and any(f.rows > 0 for f in features):
            share = dataset_drift(list(features))[1]
    quality = performance(predictions, model=model, version=version, start=start, end=end)
    value = quality.metrics.get(metric) if metric is not None else None
    return Bucket(
        start=start, end=end, requests=int(header[prof.REQUESTS]),
        errors=int(header[prof.ERRORS]), rows=int(header[prof.ROWS]),
        latency_mean_s=_mean_latency(header),
        latency_p99_s=latency_quantile(header[prof.LATENCY_BINS:prof.HEADER], 0.99),
        features=features, prediction=prediction, drift_share=share,
        labelled=quality.labelled, quality=value)


def _mean_latency(header: _Floats) -> float | None:
    requests = float(header[prof.REQUESTS])
    return float(header[prof.LATENCY_SUM]) / requests if requests > 0 else None


def _distribution(column: ColumnProfile, live: _Floats, drift: ColumnDrift) -> Distribution:
    if isinstance(column, NumericProfile):
        bins = len(column.counts)
        current = live[1:bins + 3]  # below, bins, above
        reference = np.concatenate(([0.0], np.asarray(column.counts, float), [0.0]))
        edges = column.edges
        labels = (f"< {format_number(edges[0])}" if edges else "below",
                  *(f"[{format_number(a)}, {format_number(b)}{']' if i == bins - 1 else ')'}"
                    for i, (a, b) in enumerate(itertools.pairwise(edges))),
                  f"> {format_number(edges[-1])}" if edges else "above")
        kind = "numeric"
    else:
        assert isinstance(column, CategoricalProfile)
        current = live[1:]  # categories, other, unseen
        reference = np.concatenate((np.asarray(column.counts, float),
                                    [column.other, column.forgotten]))
        edges = ()
        labels = (*(format_number(c) if isinstance(c, float) else str(c)
                    for c in column.categories), "(other)", "(unseen)")
        kind = "categorical"
    return Distribution(
        name=column.name, kind=kind, labels=labels,
        reference=tuple(float(x) for x in prof.share(reference)),
        live=tuple(float(x) for x in prof.share(np.asarray(current, float))),
        live_rows=int(current.sum()), edges=edges, drift=drift)


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0 or (value == int(value) and abs(value) < 1e6):
        return f"{int(value)}"
    if abs(value) < 1e-3 or abs(value) >= 1e6:
        return f"{value:.2e}"
    return f"{value:.4g}"


def format_duration(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    for size, unit in ((604800, "w"), (86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
