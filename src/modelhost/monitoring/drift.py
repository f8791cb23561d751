"""Drift of a version's live traffic against its reference profile, over any window.

The live profile of a window is the sum of the workers' window vectors
(``monitoring.profiles``): whole hours from the hour windows, the partial hours at
either end from the minute windows, so a week costs a few hundred rows whatever the
traffic. Minute windows are kept ``MINUTE_RETENTION``; before that, the window is
counted in whole hours. Vectors laid out on another reference (one attached later)
still count towards requests, errors and latencies, whose place is the same in every
layout, but not towards drift.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelhost.stats import profile as prof
from modelhost.stats.drift import ColumnDrift, column_drift, dataset_drift
from modelhost.stats.profile import Layout, Reference
from modelhost.store.profiles import HOUR_S, MINUTE_S, ProfileStore, StoredReference

MINUTE_RETENTION = dt.timedelta(days=2)


@dataclass(frozen=True)
class LiveCounts:
    """The summed live profile of one version over [start, end)."""

    start: dt.datetime
    end: dt.datetime
    header: np.ndarray  # requests, errors, rows, latencies: from every window
    counts: np.ndarray | None  # the full vector on the current reference's layout


@dataclass(frozen=True)
class DriftReport:
    model: str
    version: str
    start: dt.datetime
    end: dt.datetime
    reference: StoredReference | None
    requests: int
    errors: int
    rows: int  # rows profiled against the reference
    features: tuple[ColumnDrift, ...]
    prediction: ColumnDrift | None
    dataset_drift: bool | None
    drift_share: float | None

    def to_dict(self) -> dict[str, Any]:
        """PRODUCT.md §3.8's shape, plus the requests and errors of the window and where
        the reference came from (``reference`` is None, and ``message`` says so, for a
        version without one)."""
        ref = self.reference
        body: dict[str, Any] = {
            "model": self.model, "version": self.version,
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "requests": self.requests, "errors": self.errors, "rows": self.rows,
            "reference_rows": ref.rows if ref else None,
            "reference": {"source": ref.source, "digest": ref.digest,
                          "created_at": ref.created_at.isoformat()} if ref else None,
            "dataset_drift": self.dataset_drift, "drift_share": self.drift_share,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None}
        if ref is None:
            body["message"] = (f"version {self.version} has no reference profile: attach "
                               f"one with 'modelhost monitor reference {self.model} "
                               f"{self.version} --data FILE'")
        return body


class DriftService:
    def __init__(self, store: ProfileStore, *,
                 references: Callable[[str, str], StoredReference | None],
                 now: Callable[[], dt.datetime]) -> None:
        self._store = store
        self._references = references
        self._now = now

    def drift(self, model: str, version: str, *, start: dt.datetime,
              end: dt.datetime) -> DriftReport:
        stored = self._references(model, version)
        reference = Reference.from_dict(stored.profile) if stored is not None else None
        live = self.live(model, version, start=start, end=end, reference=reference)
        header = live.header
        features: tuple[ColumnDrift, ...] = ()
        prediction = None
        shared: tuple[bool, float] | tuple[None, None] = (None, None)
        rows = 0
        if reference is not None and live.counts is not None:
            layout = Layout(reference)
            features = tuple(column_drift(f, layout.column_counts(live.counts, f))
                             for f in reference.features)
            if reference.prediction is not None:
                prediction = column_drift(reference.prediction, layout.column_counts(
                    live.counts, reference.prediction, prediction=True))
            shared = dataset_drift(list(features))
            # Rows counted on the reference's columns (values and nulls): not those of
            # requests whose inputs could not be profiled (tensors, errors).
            rows = max((int(layout.column_counts(live.counts, f).sum()
                            - _sums(f, layout.column_counts(live.counts, f)))
                        for f in reference.features), default=0)
        return DriftReport(
            model=model, version=version, start=live.start, end=live.end, reference=stored,
            requests=int(header[prof.REQUESTS]), errors=int(header[prof.ERRORS]),
            rows=rows, features=features, prediction=prediction,
            dataset_drift=shared[0], drift_share=shared[1])

    def live(self, model: str, version: str, *, start: dt.datetime, end: dt.datetime,
             reference: Reference | None) -> LiveCounts:
        """The workers' windows summed over [start, end) (widened to whole minutes, and
        to whole hours before the minute windows' retention)."""
        start, end = _floor(start, MINUTE_S), _ceil(end, MINUTE_S)
        kept_since = self._now() - MINUTE_RETENTION  # minute windows before are pruned
        if start < kept_since:
            start = _floor(start, HOUR_S)
        if end < kept_since:
            end = _ceil(end, HOUR_S)
        digest = reference.digest if reference is not None else None
        header = np.zeros(prof.HEADER)
        counts = Layout(reference).empty() if reference is not None else None
        for _, window_digest, raw in self._rows(model, version, start, end):
            vector = np.frombuffer(raw, dtype="<f8")
            header += vector[:prof.HEADER]
            if counts is not None and window_digest == digest and vector.size == counts.size:
                counts += vector
        return LiveCounts(start=start, end=end, header=header, counts=counts)

    def _rows(self, model: str, version: str, start: dt.datetime,
              end: dt.datetime) -> Iterator[tuple[dt.datetime, str, bytes]]:
        first_hour, last_hour = _ceil(start, HOUR_S), _floor(end, HOUR_S)
        if first_hour >= last_hour:
            yield from self._store.windows(model, version, width_s=MINUTE_S, start=start,
                                           end=end)
            return
        yield from self._store.windows(model, version, width_s=MINUTE_S, start=start,
                                       end=first_hour)
        yield from self._store.windows(model, version, width_s=HOUR_S, start=first_hour,
                                       end=last_hour)
        yield from self._store.windows(model, version, width_s=MINUTE_S, start=last_hour,
                                       end=end)


def _sums(column: prof.ColumnProfile, counts: np.ndarray) -> float:
    """The part of a numeric column's counts that are sums of values, not counts."""
    return float(counts[-2] + counts[-1]) if isinstance(column, prof.NumericProfile) \
        else 0.0


def _floor(t: dt.datetime, seconds: int) -> dt.datetime:
    stamp = int(t.timestamp())
    return dt.datetime.fromtimestamp(stamp - stamp % seconds, dt.timezone.utc)


def _ceil(t: dt.datetime, seconds: int) -> dt.datetime:
    floored = _floor(t, seconds)
    return floored if floored == t else floored + dt.timedelta(seconds=seconds)
