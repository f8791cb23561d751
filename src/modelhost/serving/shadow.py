"""Shadow traffic: a copy of a request, sent to the shadow version after the caller has
its answer.

The predictor hands over the request's payload and the stable version's predictions;
this sends the payload to the shadow version's batcher in a background task and compares
the answers: rows that agree, and for numeric predictions the absolute difference. The
caller's answer and latency never depend on it: nothing is awaited on the request path,
at most ``max_in_flight`` copies run at once (further ones are skipped and counted), a
shadow that is not loaded is skipped (the pool loads it with the routing), and a shadow
that fails only counts an error. Each worker counts per minute and writes its counts
with the monitoring flush (``ShadowStore``), so every worker's and replica's copies
add up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from modelhost._utils import utcnow
from modelhost.serving.pool import ModelPool
from modelhost.store.shadows import ShadowCounts, ShadowStore, ShadowWindow

log = logging.getLogger(__name__)

_MINUTE = 60


class ShadowRunner:
    def __init__(self, pool: ModelPool, store: ShadowStore | None, *,
                 max_in_flight: int = 32, timeout_s: float = 30.0,
                 now: Callable[[], dt.datetime] = utcnow, worker: str | None = None) -> None:
        self._pool = pool
        self._store = store
        self._max_in_flight = max_in_flight
        self._timeout_s = timeout_s
        self._now = now
        self.worker = worker or uuid.uuid4().hex
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()  # the flush reads the counts from another thread
        self._counts: dict[tuple[str, str, str, dt.datetime], ShadowCounts] = {}
        self._dirty: set[tuple[str, str, str, dt.datetime]] = set()

    # --- on the event loop ------------------------------------------------------------

    def send(self, model: str, stable: str, shadow: str, payload: Any,
             params: Mapping[str, Any] | None, predictions: Any) -> None:
        """Copy one answered request to ``shadow`` in the background (never awaited)."""
        served = self._pool.if_loaded(model, shadow)
        if served is None or len(self._tasks) >= self._max_in_flight:
            self._count(model, stable, shadow, skipped=1)
            return
        task = asyncio.get_running_loop().create_task(
            self._run(served, model, stable, shadow, payload, params, predictions),
            name=f"modelhost-shadow {model} {shadow}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, served: Any, model: str, stable: str, shadow: str, payload: Any,
                   params: Mapping[str, Any] | None, predictions: Any) -> None:
        started = time.perf_counter()
        try:
            inputs = served.scorer.prepare(payload, numeric_rows_only=True)
            rows = len(inputs) if hasattr(inputs, "__len__") and not isinstance(
                inputs, dict) else 1
            answer, _, _ = await served.batcher.submit(inputs, rows=rows, params=params or {},
                                                       timeout_s=self._timeout_s)
        except Exception:  # noqa: BLE001  # a failing shadow is what shadows are for
            self._count(model, stable, shadow, requests=1, errors=1)
            return
        agreed, compared, numeric, diff = compare(predictions, answer)
        self._count(model, stable, shadow, requests=1, rows=compared, agreed=agreed,
                    numeric_rows=numeric, abs_diff_sum=diff,
                    latency_sum=time.perf_counter() - started)

    def _count(self, model: str, stable: str, shadow: str, **add: float) -> None:
        now = self._now()
        minute = now.replace(second=0, microsecond=0)
        key = (model, stable, shadow, minute)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = ShadowCounts()
            for name, value in add.items():
                setattr(counts, name, getattr(counts, name) + value)
            self._dirty.add(key)

    async def stop(self, *, drain_s: float = 5.0) -> None:
        """Give copies in flight ``drain_s`` to finish, cancel the rest."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=drain_s)
        for task in list(self._tasks):
            task.cancel()

    # --- in the flusher's thread ------------------------------------------------------

    def flush(self) -> int:
        """Write the minutes that changed; forget minutes that are over and written.
        Never raises (what failed stays dirty for the next flush)."""
        if self._store is None:  # nowhere to keep them: only the current minute's
            self._forget_before(self._now().replace(second=0, microsecond=0), dirty=True)
            return 0
        with self._lock:
            keys = list(self._dirty)
            self._dirty.clear()
            windows = [ShadowWindow(*key[:3], key[3], self.worker,
                                    ShadowCounts(**{n: getattr(self._counts[key], n)
                                                    for n in ShadowCounts.__slots__}))
                       for key in keys]
        try:
            self._store.write(windows)
        except Exception:  # the flusher runs on
            with self._lock:
                self._dirty.update(keys)
            log.warning("shadow counts could not be written; retried at the next flush",
                        exc_info=log.isEnabledFor(logging.DEBUG))
            return 0
        self._forget_before(self._now().replace(second=0, microsecond=0), dirty=False)
        return len(windows)

    def _forget_before(self, minute: dt.datetime, *, dirty: bool) -> None:
        """Drop the counts of minutes before ``minute`` (written ones; with ``dirty``,
        unwritten ones too), so memory holds about one minute per shadow."""
        with self._lock:
            for key in [k for k in self._counts if k[3] < minute
                        and (dirty or k not in self._dirty)]:
                del self._counts[key]
                self._dirty.discard(key)


def compare(stable: Any, shadow: Any) -> tuple[int, int, int, float]:
    """(rows that agree, rows compared, numeric rows, sum of |shadow - stable| over
    them) of two answers; answers of different lengths compare nothing."""
    a, b = np.asarray(stable), np.asarray(shadow)
    if a.shape[:1] != b.shape[:1] or a.ndim == 0:
        return 0, 0, 0, 0.0
    rows = a.shape[0]
    if a.shape != b.shape:
        return 0, rows, 0, 0.0
    equal = (a == b).reshape(rows, -1).all(axis=1)
    if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
        diff = np.abs(a.astype(float) - b.astype(float)).reshape(rows, -1).mean(axis=1)
        finite = np.isfinite(diff)
        return int(equal.sum()), rows, int(finite.sum()), float(diff[finite].sum())
    return int(equal.sum()), rows, 0, 0.0
