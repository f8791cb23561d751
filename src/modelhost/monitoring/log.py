"""The prediction log: a monitor that samples the recorded requests and stores them.

A server records each answered request once (``monitoring.record``); every few seconds
its flush hands the records to ``consume``, in a worker thread, never on the event loop.
``consume`` keeps the answered predictions that are sampled, turns them into JSON, a
chunk of requests per orjson call, and stores them in one transaction, so neither the
encoding nor the database ever delays an answer. ``observe`` and ``flush`` run the log on
its own (a recorder of its own), as a script or a test would.

Sampling: each request is kept with probability ``sample``, and at most ``max_per_s``
per second per worker (a token bucket over the requests' answer times), so a busy server
logs a steady trickle instead of every request; below that rate, every request is logged.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import operator
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelhost._utils import OncePer
from modelhost.monitoring.buffer import group_rows
from modelhost.monitoring.record import (
    ARM,
    AT,
    INPUTS,
    MODEL,
    PREDICTIONS,
    PROBABILITIES,
    REQUEST_ID,
    ROWS,
    STATUS,
    VERSION,
    Observed,
    Recorder,
    Records,
)
from modelhost.store.monitoring import CHUNK, JSON, TABLE, LogChunk, PredictionLogStore
from modelhost.store.monitoring import ROWS as ROWS_KIND

log = logging.getLogger(__name__)

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_WARN_EVERY_S = 60.0
_EPSILON = 1e-9  # tokens counted in floats: 0.9999999999 of a token is one
_SET_BACK_S = 1.0  # answer times this far behind the bucket's: the clock was set back


@dataclass(frozen=True)
class LogOptions:
    sample: float = 1.0  # share of requests logged
    max_per_s: float = 1000.0  # per worker; above it, requests are sampled down
    buffer_requests: int = 100_000  # requests held between flushes, at most
    buffer_rows: int = 1_000_000  # ... and rows (a request may carry thousands)
    retention: dt.timedelta = dt.timedelta(days=30)


class RateLimit:
    """A token bucket: ``per_s`` tokens a second, holding one second's worth (and at
    least one token), one token per request kept, on the requests' own answer times
    (wall-clock times: should the clock be set back by more than a second, the bucket's
    time starts again from the new times, so the log does not stop until it catches up)."""

    def __init__(self, per_s: float) -> None:
        self.per_s = per_s
        self.capacity = max(1.0, per_s)
        self._tokens = self.capacity
        self._last: float | None = None  # the time of the last refill

    def admit(self, times: Sequence[float]) -> list[int] | None:
        """Which of the requests answered at ``times`` (in their order) are kept, by
        position; None: all of them."""
        count = len(times)
        if count == 0:
            return []
        last = self._last
        if last is None or times[0] < last - _SET_BACK_S:
            last = times[0]  # the first request, or the clock was set back: start afresh
        # Seconds since the last refill; a clock set back a little counts as no time
        # passing.
        t = np.maximum(np.maximum.accumulate(np.asarray(times, dtype=np.float64) - last), 0)
        # If every earlier request was kept, the k-th finds a_k + min(tokens, capacity -
        # max(a_0..a_k)) tokens, with a_k = per_s * t_k - k: a refill capped at the
        # capacity, unrolled. When that is at least one for every request, all are kept
        # without a step per request (the common case, below the rate).
        a = self.per_s * t - np.arange(count)
        found = a + np.minimum(self._tokens, self.capacity - np.maximum.accumulate(a))
        if found.min() >= 1.0 - _EPSILON:
            self._tokens = float(found[-1]) - 1.0
            self._last = last + float(t[-1])
            return None
        kept = []
        tokens, before = self._tokens, 0.0
        for k, now in enumerate(t.tolist()):
            tokens = min(self.capacity, tokens + (now - before) * self.per_s)
            before = now
            if tokens >= 1.0 - _EPSILON:
                tokens -= 1.0
                kept.append(k)
        self._tokens, self._last = tokens, last + before
        return kept


class _ArmTexts(dict[Any, str | None]):
    """An arm's text (``ArmRole.CANDIDATE`` -> "candidate"), found once per arm."""

    def __missing__(self, arm: Any) -> str | None:
        text = None if arm is None else str(arm.value)
        self[arm] = text
        return text


class PredictionLog:
    """A monitor (``name``, ``consume``) that logs answered predictions."""

    name = "prediction_log"

    def __init__(self, store: PredictionLogStore, *, options: LogOptions | None = None,
                 columns: Callable[[str, str], list[str] | None] = lambda m, v: None,
                 draw: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``columns(model, version)`` names the columns of inputs that arrive as a
        plain array (the signature's columns); it is called in ``consume``, never on
        the event loop. ``clock`` spaces the warnings (at most one a minute)."""
        self._store = store
        self.options = options or LogOptions()
        self._columns = columns
        self._draw = draw
        self._limit = RateLimit(self.options.max_per_s)
        self._arms = _ArmTexts()
        self._lost = 0  # entries not stored (database, encoding)
        self._warn_now = OncePer(_WARN_EVERY_S, clock=clock)
        self.written = 0
        # The log on its own (observe, flush); a server records once for every monitor.
        self._alone = Recorder([self], max_requests=self.options.buffer_requests,
                               max_rows=self.options.buffer_rows)

    # --- the log on its own -----------------------------------------------------------

    def observe(self, o: Observed) -> None:
        """Record an answered request (on the event loop; see ``monitoring.record``)."""
        self._alone.observe(o)

    def flush(self, *, limit: int = 20_000) -> int:
        """Store what :meth:`observe` recorded (at most ``limit`` requests); returns how
        many were stored."""
        written = self.written
        self._alone.flush(limit=limit)
        return self.written - written

    @property
    def pending(self) -> int:
        return self._alone.pending

    @property
    def dropped(self) -> int:
        """Requests lost: refused by a full buffer, or not stored (database, encoding)."""
        return self._lost + self._alone.dropped

    # --- in the flusher's thread ------------------------------------------------------

    def consume(self, records: Records) -> int:
        """Store the answered predictions among ``records`` that are sampled, in one
        transaction; returns how many were stored. Never raises: an entry that cannot be
        encoded is skipped, and on a database error the batch is dropped; both are
        counted and logged, since a log must never hold the server's memory (or its
        feedback) hostage."""
        kept = self._sampled(records)
        if kept is not None:
            if not kept:
                return 0
            records = [[field[i] for i in kept] for field in records]
        chunks = []
        for (model, version), group in group_rows(records, MODEL, VERSION).items():
            requests = len(group[0])
            try:
                columns = self._columns(model, version)
            except Exception:  # noqa: BLE001  # one odd version must not cost the batch
                self._lost += requests
                self._warn("encode", "prediction log: %d requests of %s %s could not be "
                           "encoded", requests, model, version)
                continue
            for start in range(0, requests, CHUNK):
                part = [field[start:start + CHUNK] for field in group]
                chunk = self._chunk(model, version, part, columns)
                if chunk is not None:
                    chunks.append(chunk)
        stored = sum(len(c.request_ids) for c in chunks)
        try:
            self._store.append_chunks(chunks)
        except Exception:  # noqa: BLE001  # the flusher runs on, whatever the database says
            self._lost += stored
            self._warn("store", "prediction log: %d entries could not be stored and were "
                       "dropped", stored)
            return 0
        self.written += stored
        return stored

    def _sampled(self, records: Records) -> list[int] | None:
        """The positions of the records to log (None: all): answered predictions,
        sampled, under the rate."""
        statuses, predictions = records[STATUS], records[PREDICTIONS]
        count = len(statuses)
        if statuses.count(200) == count and all(
                map(operator.is_not, predictions, itertools.repeat(None))):
            answered: list[int] | None = None
        else:
            answered = [i for i in range(count)
                        if statuses[i] == 200 and predictions[i] is not None]
        sample = self.options.sample
        if sample < 1.0:
            answered = [i for i in (range(count) if answered is None else answered)
                        if self._draw() < sample]
        times = records[AT] if answered is None else [records[AT][i] for i in answered]
        admitted = self._limit.admit(times)
        if admitted is None:
            return answered
        return admitted if answered is None else [answered[i] for i in admitted]

    def _chunk(self, model: str, version: str, fields: list[list[Any]],
               columns: list[str] | None) -> LogChunk | None:
        """One chunk of requests (given by field): the float64 rows of tabular inputs as
        one binary array (a copy, no text), the other inputs and every output encoded by
        one orjson call each (in C: numpy arrays are written as they are), with the
        signature's column names once per chunk instead of once per request. Should an
        item fail to encode, the items are encoded one by one and only that one is
        lost."""
        ids, ats, rows, given = fields[REQUEST_ID], fields[AT], fields[ROWS], fields[INPUTS]
        predictions, probabilities = fields[PREDICTIONS], fields[PROBABILITIES]
        arms: list[Any] = list(map(self._arms.__getitem__, fields[ARM]))
        width = -1 if columns is None else len(columns)
        kinds: list[Any] = [_kind(x, width) for x in given]
        inputs = [None if k == TABLE else x if k == ROWS_KIND else inputs_json(x, None)
                  for x, k in zip(given, kinds, strict=True)]
        outputs = [{"predictions": p} if q is None else {"predictions": p, "probabilities": q}
                   for p, q in zip(predictions, probabilities, strict=True)]
        try:
            inputs_text, outputs_text = _dumps(inputs), _dumps(outputs)
        except Exception:  # noqa: BLE001  # find the one that fails, keep the others
            kept: list[int] = []
            encoded: list[tuple[str, str]] = []
            for i, request_id in enumerate(ids):
                try:
                    encoded.append((_dumps(inputs[i]), _dumps(outputs[i])))
                    kept.append(i)
                except Exception:  # noqa: BLE001
                    self._lost += 1
                    self._warn("encode", "prediction log: request %s of %s %s could not "
                               "be encoded", request_id, model, version)
            if not kept:
                return None
            arms, rows, ids, ats, given, kinds = (
                [field[i] for i in kept] for field in (arms, rows, ids, ats, given, kinds))
            inputs_text = "[" + ",".join(i for i, _ in encoded) + "]"
            outputs_text = "[" + ",".join(o for _, o in encoded) + "]"
        tables = [x for x, k in zip(given, kinds, strict=True) if k == TABLE]
        table = np.concatenate(tables).astype("<f8", copy=False).tobytes() if tables \
            else None
        return LogChunk(model, version, ids, ats, rows, arms, columns, kinds, inputs_text,
                        outputs_text, table)

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """A warning at most once a minute per kind (a database that stays down must not
        flood the log every flush); ``dropped`` counts every entry lost."""
        if not self._warn_now(kind):
            return
        log.warning(message + " (%d dropped so far; said at most once a minute)",
                    *args, self.dropped, exc_info=log.isEnabledFor(logging.DEBUG))

    def prune(self, now: dt.datetime) -> tuple[int, int]:
        """Delete predictions and feedback older than the retention."""
        return self._store.prune(before=now - self.options.retention)


def _kind(inputs: Any, width: int) -> int:
    """How a request's inputs are kept: rows of the signature's columns (float64 ones in
    the chunk's binary table), or a JSON value of their own."""
    if type(inputs) is not np.ndarray or inputs.ndim != 2 or inputs.shape[1] != width:
        return JSON
    return TABLE if inputs.dtype == np.float64 else ROWS_KIND


def inputs_json(inputs: Any, columns: list[str] | None) -> Any:
    """Validated inputs as JSON values: a table as ``{"columns": [...], "data": [rows]}``
    (a DataFrame, or a 2-D array with the signature's ``columns``); tensors as they are
    (nested lists, or an object of them)."""
    if hasattr(inputs, "columns") and hasattr(inputs, "to_numpy"):  # a DataFrame
        return {"columns": [str(c) for c in inputs.columns],
                "data": inputs.to_numpy(dtype=object).tolist()}
    shape = getattr(inputs, "shape", None)
    if columns is not None and shape is not None and len(shape) == 2 \
            and shape[1] == len(columns):
        return {"columns": columns, "data": inputs}
    return inputs


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=_fallback, option=_NUMPY).decode()


def _fallback(value: Any) -> Any:
    """Values orjson does not know (numpy scalars in object arrays, pandas timestamps,
    pandas' missing value)."""
    if type(value).__name__ == "NAType":
        return None
    if hasattr(value, "tolist"):  # arrays orjson does not write itself (strings, objects)
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
