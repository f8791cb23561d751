"""The prediction log's writer: an observer of the prediction path with a bounded buffer.

``observe`` runs on the event loop right after each answer: it only samples and appends
the request's fields (its time, validated inputs and outputs, by reference) to a buffer
(``monitoring.buffer``: no object per request for the garbage collector).
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
from modelhost.monitoring.buffer import RecordBuffer, group_rows
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


# The fields the buffer keeps of a request, in order.
_FIELDS = ("model", "version", "arm", "rows", "request_id", "at", "inputs", "predictions",
           "probabilities")
_ROWS = _FIELDS.index("rows")


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
        # The requests' fields as they were handed over (by reference: their inputs and
        # outputs are encoded in the flush, never on the event loop).
        self._buffer = RecordBuffer(len(_FIELDS), capacity=self.options.buffer_requests)
        self._arms: dict[Any, str] = {}  # an arm's text, without Enum.value per request
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
        rows = o.rows
        arm = o.arm
        if arm is not None:
            arm = self._arms.get(arm) or self._arms.setdefault(arm, str(arm.value))
        if (self._rows_in - self._rows_out + rows > self.options.buffer_rows
                or not self._buffer.offer((o.model, o.version, arm, rows, o.request_id, o.at,
                                           o.inputs, o.predictions, o.probabilities))):
            self.dropped += 1
            return
        self._rows_in += rows

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
        fields = self._buffer.take(limit)
        if not fields[0]:
            return 0
        self._rows_out += sum(fields[_ROWS])
        chunks = []
        for (model, version), group in group_rows(fields, 0, 1).items():  # model, version
            requests = len(group[0])
            try:
                columns = self._columns(model, version)
            except Exception:  # noqa: BLE001  # one odd version must not cost the batch
                self.dropped += requests
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
            self.dropped += stored
            self._warn("store", "prediction log: %d entries could not be stored and were "
                       "dropped", stored)
            return 0
        self.written += stored
        return stored

    def _chunk(self, model: str, version: str, fields: list[list[Any]],
               columns: list[str] | None) -> LogChunk | None:
        """One chunk of requests (given by field): the float64 rows of tabular inputs as
        one binary array (a copy, no text), the other inputs and every output encoded by
        one orjson call each (in C: numpy arrays are written as they are), with the
        signature's column names once per chunk instead of once per request. Should an
        item fail to encode, the items are encoded one by one and only that one is
        lost."""
        _, _, arms, rows, ids, ats, given, predictions, probabilities = fields
        width = -1 if columns is None else len(columns)
        kinds = [_kind(x, width) for x in given]
        inputs = [None if k == TABLE else x if k == ROWS else inputs_json(x, None)
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
                    self.dropped += 1
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
