"""The prediction log's writer: an observer of the prediction path with a bounded buffer.

``observe`` runs on the event loop right after each answer: it only samples and appends
the request (its time, validated inputs and outputs, by reference) to a buffer.
``flush`` (called every few seconds from a worker thread by the server) turns the
buffered requests into JSON, a chunk of requests per orjson call, and stores them in one
transaction, so neither the encoding nor the database ever delays an answer. When the
buffer is full (the database is slow or down), new entries are dropped and counted, never
queued without bound.

Sampling: each request is kept with probability ``sample``, and at most ``max_per_s``
per second per worker (a token bucket), so a busy server logs a steady trickle instead of
every request; below that rate, every request is logged.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from modelhost._utils import OncePer
from modelhost.store.monitoring import CHUNK, JSON, ROWS, TABLE, LogChunk, PredictionLogStore

log = logging.getLogger(__name__)

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_WARN_EVERY_S = 60.0


class ObservedPrediction(Protocol):
    """What the log needs of one answered request (serving's Observation has it)."""

    @property
    def model(self) -> str | None: ...
    @property
    def version(self) -> str | None: ...
    @property
    def arm(self) -> Any: ...
    @property
    def status(self) -> int: ...
    @property
    def rows(self) -> int: ...
    @property
    def request_id(self) -> str: ...
    @property
    def at(self) -> float: ...  # time.time() when answered
    @property
    def inputs(self) -> Any: ...
    @property
    def predictions(self) -> Any: ...
    @property
    def probabilities(self) -> Any: ...


@dataclass(frozen=True)
class LogOptions:
    sample: float = 1.0  # share of requests logged
    max_per_s: float = 1000.0  # per worker; above it, requests are sampled down
    buffer_requests: int = 100_000  # requests held between flushes, at most
    buffer_rows: int = 1_000_000  # ... and rows (a request may carry thousands)
    retention: dt.timedelta = dt.timedelta(days=30)


class PredictionLog:
    """Observer (``name``, ``wants_data``, ``observe``) that logs answered predictions."""

    name = "prediction_log"
    wants_data = True

    def __init__(self, store: PredictionLogStore, *, options: LogOptions | None = None,
                 columns: Callable[[str, str], list[str] | None] = lambda m, v: None,
                 clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = random.random) -> None:
        """``columns(model, version)`` names the columns of inputs that arrive as a
        plain array (the signature's columns); it is called in ``flush``, never on the
        event loop."""
        self._store = store
        self.options = options or LogOptions()
        self._columns = columns
        self._clock = clock
        self._draw = draw
        # The requests as they were handed over (by reference: their inputs and outputs
        # are encoded in the flush, never on the event loop). Nothing else is allocated
        # per request: each object kept until the flush is work for the garbage collector.
        self._buffer: collections.deque[ObservedPrediction] = collections.deque()
        # The bucket holds one second's worth, and at least one request.
        self._capacity = max(1.0, self.options.max_per_s)
        self._tokens = self._capacity
        self._refilled = clock()
        # Rows put into the buffer (by observe) and taken out (by flush): each counter is
        # written by one thread only, so their difference is exact without a lock.
        self._rows_in = 0
        self._rows_out = 0
        self.dropped = 0  # entries refused (buffer full) or not stored (database, encoding)
        self._warn_now = OncePer(_WARN_EVERY_S, clock=clock)
        self.written = 0

    # --- on the event loop ------------------------------------------------------------

    def observe(self, o: ObservedPrediction) -> None:
        if (o.status != 200 or o.predictions is None or o.model is None
                or o.version is None or not self._sampled()):
            return
        if (len(self._buffer) >= self.options.buffer_requests
                or self._rows_in - self._rows_out + o.rows > self.options.buffer_rows):
            self.dropped += 1
            return
        self._rows_in += o.rows
        self._buffer.append(o)

    def _sampled(self) -> bool:
        options = self.options
        if options.sample < 1.0 and self._draw() >= options.sample:
            return False
        now = self._clock()
        self._tokens = min(self._capacity,
                           self._tokens + (now - self._refilled) * options.max_per_s)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    # --- in a worker thread -----------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self, *, limit: int = 20_000) -> int:
        """Store what is buffered (at most ``limit`` requests in one transaction);
        returns how many were stored. Never raises: an entry that cannot be encoded is
        skipped, and on a database error the batch is dropped; both are counted and
        logged, since a log must never hold the server's memory (or its feedback) hostage.
        """
        batch: list[ObservedPrediction] = []
        buffer = self._buffer
        while buffer and len(batch) < limit:
            batch.append(buffer.popleft())  # deque: safe against observe() meanwhile
        if not batch:
            return 0
        self._rows_out += sum(o.rows for o in batch)
        groups: dict[tuple[str, str], list[ObservedPrediction]] = {}
        for o in batch:  # (observe let through only requests with a model and version)
            groups.setdefault((str(o.model), str(o.version)), []).append(o)
        chunks = []
        for (model, version), group in groups.items():
            try:
                columns = self._columns(model, version)
            except Exception:  # noqa: BLE001  # one odd version must not cost the batch
                self.dropped += len(group)
                self._warn("encode", "prediction log: %d requests of %s %s could not be "
                           "encoded", len(group), model, version)
                continue
            for start in range(0, len(group), CHUNK):
                chunk = self._chunk(model, version, group[start:start + CHUNK], columns)
                if chunk is not None:
                    chunks.append(chunk)
        stored = sum(len(c.request_ids) for c in chunks)
        try:
            self._store.append_chunks(chunks)
        except Exception:  # noqa: BLE001  # the flusher runs on, whatever the database says
            self.dropped += stored
            self._warn("store", "prediction log: %d entries could not be stored and were "
                       "dropped", stored)
            return 0
        self.written += stored
        return stored

    def _chunk(self, model: str, version: str, seen: list[ObservedPrediction],
               columns: list[str] | None) -> LogChunk | None:
        """One chunk of ``part``: the float64 rows of tabular inputs as one binary array
        (a copy, no text), the other inputs and every output encoded by one orjson call
        each (in C: numpy arrays are written as they are), with the signature's column
        names once per chunk instead of once per request. Should an item fail to
        encode, the items are encoded one by one and only that one is lost."""
        width = -1 if columns is None else len(columns)
        kinds = [_kind(o.inputs, width) for o in seen]
        inputs = [None if k == TABLE else o.inputs if k == ROWS else inputs_json(o.inputs, None)
                  for o, k in zip(seen, kinds, strict=True)]
        outputs = [{"predictions": o.predictions} if o.probabilities is None else
                   {"predictions": o.predictions, "probabilities": o.probabilities}
                   for o in seen]
        try:
            inputs_text, outputs_text = _dumps(inputs), _dumps(outputs)
        except Exception:  # noqa: BLE001  # find the one that fails, keep the others
            kept: list[int] = []
            encoded: list[tuple[str, str]] = []
            for i, o in enumerate(seen):
                try:
                    encoded.append((_dumps(inputs[i]), _dumps(outputs[i])))
                    kept.append(i)
                except Exception:  # noqa: BLE001
                    self.dropped += 1
                    self._warn("encode", "prediction log: request %s of %s %s could not "
                               "be encoded", o.request_id, model, version)
            if not kept:
                return None
            seen = [seen[i] for i in kept]
            kinds = [kinds[i] for i in kept]
            inputs_text = "[" + ",".join(i for i, _ in encoded) + "]"
            outputs_text = "[" + ",".join(o for _, o in encoded) + "]"
        tables = [o.inputs for o, k in zip(seen, kinds, strict=True) if k == TABLE]
        table = np.concatenate(tables).astype("<f8", copy=False).tobytes() if tables \
            else None
        return LogChunk(model, version, [o.request_id for o in seen], [o.at for o in seen],
                        [o.rows for o in seen],
                        [None if o.arm is None else str(o.arm.value) for o in seen],
                        columns, kinds, inputs_text, outputs_text, table)

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
    return TABLE if inputs.dtype == np.float64 else ROWS


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
