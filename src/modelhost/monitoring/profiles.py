"""Live profiles: every worker counts what its versions see, per minute and per hour.

A server records each answered request once (``monitoring.record``); every few seconds
its flush hands the records to ``consume``, in a worker thread, which groups them by
version and minute and counts each group at once with numpy on the version's reference
(``stats.profile.Layout``): requests, errors, rows and latencies for every request,
inputs and predictions for answered ones. The counts go into this worker's open minute
and hour windows, whose whole vectors are then written (an idempotent upsert per
window), so a failed write is simply retried at the next flush and never counts twice.

Windows of all workers and replicas add up; queries sum them (``monitoring.drift``).
A version's reference is looked up in the flush (never on the event loop) and again every
``reference_ttl_s`` (at every flush while it has none), so a reference attached later is
picked up; a version without one still gets its request, error and latency counts.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelhost._utils import OncePer
from modelhost.monitoring.buffer import group_rows
from modelhost.monitoring.record import (
    AT,
    INPUTS,
    LATENCY_S,
    MAX_REQUESTS,
    MAX_ROWS,
    MODEL,
    PREDICTIONS,
    ROWS,
    STATUS,
    VERSION,
    Observed,
    Recorder,
    Records,
)
from modelhost.stats.profile import Layout, Reference
from modelhost.store.profiles import HOUR_S, MINUTE_S, ProfileStore, WindowCounts

log = logging.getLogger(__name__)

_WARN_EVERY_S = 60.0
_KEEP_CLOSED_S = 180.0  # a closed window stays in memory this long past its end
_MAX_OPEN = 10_000  # windows held in memory at most (a database down for days)
_RETRY_REFERENCE_S = 5.0  # after a failed lookup of a reference


@dataclass(slots=True)
class _Window:
    counts: np.ndarray
    dirty: bool = True


class LiveProfiles:
    """A monitor (``name``, ``consume``) that profiles live traffic."""

    name = "live_profiles"

    def __init__(self, store: ProfileStore, *,
                 references: Callable[[str, str], Reference | None],
                 buffer_requests: int = MAX_REQUESTS, buffer_rows: int = MAX_ROWS,
                 reference_ttl_s: float = 60.0, worker: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``buffer_requests`` and ``buffer_rows`` bound the profiles on their own
        (:meth:`observe`); a server's recorder has bounds of its own."""
        self._store = store
        self._references = references
        self._ttl = reference_ttl_s
        self._clock = clock
        self.worker = worker or uuid.uuid4().hex
        self._layouts: dict[tuple[str, str], tuple[Layout, float]] = {}
        self._windows: dict[tuple[str, str, str, int, int], _Window] = {}
        self._warn_now = OncePer(_WARN_EVERY_S)
        # The profiles on their own (observe, flush); a server records once for every
        # monitor.
        self._alone = Recorder([self], max_requests=buffer_requests, max_rows=buffer_rows)

    # --- the profiles on their own ----------------------------------------------------

    def observe(self, o: Observed) -> None:
        """Record an answered request (on the event loop; see ``monitoring.record``)."""
        self._alone.observe(o)

    def flush(self) -> int:
        """Count what :meth:`observe` recorded and write the windows that changed;
        returns how many requests were counted."""
        return self._alone.flush()

    @property
    def dropped(self) -> int:
        """Requests not counted: the buffer was full."""
        return self._alone.dropped

    # --- in the flusher's thread ------------------------------------------------------

    def consume(self, records: Records) -> int:
        """Count ``records`` and write the windows that changed; returns how many
        requests were counted. Never raises (the windows stay dirty until a write
        succeeds)."""
        for (model, version), seen in group_rows(records, MODEL, VERSION).items():
            try:
                self._count(model, version, seen)
            except Exception:  # noqa: BLE001  # one odd version must not stop the others
                self._warn("count", "live profiles: requests of %s %s could not be counted",
                           model, version)
        self._write()
        self._forget_closed()
        return len(records[0])

    def _count(self, model: str, version: str, seen: list[list[Any]]) -> None:
        """Count the requests of one version (given by field) into their windows."""
        layout = self._layout(model, version)
        at = np.array(seen[AT], dtype=np.float64)
        minutes = (at // MINUTE_S).astype(np.int64) * MINUTE_S
        for minute in np.unique(minutes):
            inside = minutes == minute
            part = seen if inside.all() else [
                [value for value, keep in zip(field, inside, strict=True) if keep]
                for field in seen]
            statuses, latencies, rows = part[STATUS], part[LATENCY_S], part[ROWS]
            inputs, outputs = part[INPUTS], part[PREDICTIONS]
            counts = layout.empty()
            layout.add_requests(counts, latencies_s=np.array(latencies, dtype=np.float64),
                                errors=sum(status != 200 for status in statuses),
                                rows=sum(rows))
            if layout.reference is not None:
                columns, predictions = _columns(layout.reference, statuses, inputs, outputs)
                if columns:
                    layout.add_rows(counts, columns, predictions)
            start = int(minute)
            self._add(model, version, layout.digest, MINUTE_S, start, counts)
            self._add(model, version, layout.digest, HOUR_S, start - start % HOUR_S, counts)

    def _add(self, model: str, version: str, digest: str, width: int, start: int,
             counts: np.ndarray) -> None:
        key = (model, version, digest, width, start)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= _MAX_OPEN:
                self._warn("full", "live profiles: too many unwritten windows; the "
                           "counts of %s %s were dropped", model, version)
                return
            self._windows[key] = _Window(counts.copy())
        else:
            window.counts += counts
            window.dirty = True

    def _layout(self, model: str, version: str) -> Layout:
        """The layout of a version's vectors: its reference, looked up again after
        ``reference_ttl_s``, or at every flush while it has none (so a reference
        attached to a served version counts from the next flush on)."""
        now = self._clock()
        cached = self._layouts.get((model, version))
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            reference = self._references(model, version)
        except Exception:  # noqa: BLE001  # the database may be down: count what we can
            self._warn("reference", "live profiles: the reference of %s %s could not be "
                       "read", model, version)
            layout = cached[0] if cached is not None else Layout(None)
            self._layouts[(model, version)] = (layout, now + _RETRY_REFERENCE_S)
            return layout
        if cached is not None and cached[0].reference == reference:
            layout = cached[0]
        else:
            layout = Layout(reference)
        self._layouts[(model, version)] = (layout, now + self._ttl if reference else now)
        return layout

    def _write(self) -> None:
        dirty = [(key, w) for key, w in self._windows.items() if w.dirty]
        if not dirty:
            return
        try:
            self._store.write_windows([
                WindowCounts(model=m, version=v, width_s=width,
                             start=dt.datetime.fromtimestamp(start, dt.timezone.utc),
                             worker=self.worker, digest=digest,
                             counts=w.counts.astype("<f8").tobytes())
                for (m, v, digest, width, start), w in dirty])
        except Exception:  # noqa: BLE001  # kept dirty: written at the next flush
            self._warn("store", "live profiles: %d windows could not be written; retrying "
                       "at the next flush", len(dirty))
            return
        for _, w in dirty:
            w.dirty = False

    def _forget_closed(self) -> None:
        now = self._clock()
        for key in [k for k, w in self._windows.items()
                    if not w.dirty and k[4] + k[3] + _KEEP_CLOSED_S < now]:
            del self._windows[key]

    def _warn(self, kind: str, message: str, *args: object) -> None:
        if self._warn_now(kind):
            log.warning(message + " (said at most once a minute)", *args,
                        exc_info=log.isEnabledFor(logging.DEBUG))


def _columns(reference: Reference, statuses: list[int], inputs: list[Any],
             outputs: list[Any]) -> tuple[dict[str, Any], Any]:
    """The answered requests' inputs as one array per reference column, and their
    predictions as one array (validated inputs are DataFrames with the signature's
    columns, of which the reference may profile fewer, or 2-D arrays of exactly the
    profiled ones; tensors are not profiled)."""
    names = [f.name for f in reference.features]
    blocks, predictions = [], []
    # A frame's columns -> where the profiled ones are (None: all, in order; empty: a
    # frame that lacks some, not profiled). Frames of one version share their columns.
    positions: dict[tuple[Any, ...], Any] = {}
    for status, given, output in zip(statuses, inputs, outputs, strict=True):
        if status != 200 or given is None:
            continue
        if hasattr(given, "to_numpy") and hasattr(given, "columns"):
            key = tuple(given.columns)
            if key not in positions:
                found = given.columns.get_indexer(names)
                positions[key] = (() if (found < 0).any()
                                  else None if list(found) == list(range(len(key)))
                                  else found)
            where = positions[key]
            if where is None:
                block = given.to_numpy()
            elif len(where) == 0:
                continue
            else:
                block = given.to_numpy()[:, where]
        elif isinstance(given, np.ndarray) and given.ndim == 2 \
                and given.shape[1] == len(names):
            block = given
        else:
            continue
        blocks.append(block)
        predictions.append(np.asarray(output))
    if not blocks:
        return {}, None
    table = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    joined = np.concatenate(predictions) if len(predictions) > 1 else predictions[0]
    return {name: table[:, i] for i, name in enumerate(names)}, joined
