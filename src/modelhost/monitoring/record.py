"""One record per answered request, for every monitor: the observer of the prediction
path that the prediction log and the live profiles share.

``Recorder.observe`` runs on the event loop right after each answer and only appends the
request's fields (by reference: its validated inputs and outputs are never copied) as
one record to a bounded buffer (``monitoring.buffer``). ``Recorder.flush`` (every few
seconds, from a worker thread) takes the records back once, by field, and hands the same
lists to each monitor's ``consume``: the log samples, encodes and stores them, the
profiles count them. One record instead of one per monitor is one append on the event
loop and one take in the flush, whatever the number of monitors; the log's sampling
runs in its ``consume``, off the event loop, on the requests' answer times.

When the buffer is full (the database is slow or down), new requests are dropped and
counted, never queued without bound.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from modelhost._utils import OncePer
from modelhost.monitoring.buffer import RecordBuffer

log = logging.getLogger(__name__)

# A record's fields, in order: Records are lists of these, one list per field.
FIELDS = ("model", "version", "arm", "status", "at", "latency_s", "rows", "request_id",
          "inputs", "predictions", "probabilities")
(MODEL, VERSION, ARM, STATUS, AT, LATENCY_S, ROWS, REQUEST_ID, INPUTS, PREDICTIONS,
 PROBABILITIES) = range(len(FIELDS))

Records = list[list[Any]]
"""Records by field (``Records[STATUS][i]`` is the status of the i-th request)."""

_WARN_EVERY_S = 60.0
# A recorder's bounds unless told otherwise: requests, and rows (a request may carry
# thousands), held between two flushes.
MAX_REQUESTS = 200_000
MAX_ROWS = 2_000_000


class Observed(Protocol):
    """What a record keeps of one answered request (serving's Observation has it)."""

    @property
    def model(self) -> str | None: ...
    @property
    def version(self) -> str | None: ...
    @property
    def arm(self) -> Any: ...
    @property
    def status(self) -> int: ...
    @property
    def at(self) -> float: ...  # time.time() when answered
    @property
    def latency_s(self) -> float: ...
    @property
    def rows(self) -> int: ...
    @property
    def request_id(self) -> str: ...
    @property
    def inputs(self) -> Any: ...
    @property
    def predictions(self) -> Any: ...
    @property
    def probabilities(self) -> Any: ...


class Monitor(Protocol):
    """Consumes the records of one flush (in the flusher's thread; never raises)."""

    name: str

    def consume(self, records: Records) -> object: ...


class Recorder:
    """Observer (``name``, ``wants_data``, ``observe``) that records answered requests of
    known model versions for ``monitors``; see the module doc."""

    name = "monitoring"
    wants_data = True

    def __init__(self, monitors: Sequence[Monitor], *, max_requests: int = MAX_REQUESTS,
                 max_rows: int = MAX_ROWS) -> None:
        """At most ``max_requests`` requests and ``max_rows`` rows (a request may carry
        thousands) are held between two flushes."""
        self.monitors = tuple(monitors)
        self._buffer = RecordBuffer(len(FIELDS), capacity=max_requests)
        self._max_rows = max_rows
        # Rows put into the buffer (by observe) and taken out (by flush): each counter is
        # written by one thread only, so their difference is exact without a lock.
        self._rows_in = 0
        self._rows_out = 0
        self.dropped = 0  # requests refused: the buffer was full
        # One flush at a time: the flusher and a feedback request may both ask for one.
        self._flushing = threading.Lock()
        self._warn_now = OncePer(_WARN_EVERY_S)

    # --- on the event loop ------------------------------------------------------------

    def observe(self, o: Observed) -> None:
        if o.model is None or o.version is None:
            return
        rows = o.rows
        if (self._rows_in - self._rows_out + rows > self._max_rows
                or not self._buffer.offer((o.model, o.version, o.arm, o.status, o.at,
                                           o.latency_s, rows, o.request_id, o.inputs,
                                           o.predictions, o.probabilities))):
            self.dropped += 1
            return
        self._rows_in += rows

    # --- in a worker thread -----------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self, *, limit: int | None = None) -> int:
        """Take what is buffered (at most ``limit`` requests) and hand it to every
        monitor, even when there is nothing (a monitor may retry an earlier write);
        returns how many requests were taken. Never raises."""
        with self._flushing:
            records = self._buffer.take(limit)
            self._rows_out += sum(records[ROWS])
            for monitor in self.monitors:
                try:
                    monitor.consume(records)
                except Exception:  # one monitor's failure spares the others
                    if self._warn_now(monitor.name):
                        log.exception("monitoring: %s failed on %d requests (logged at "
                                      "most once a minute)", monitor.name, len(records[0]))
            return len(records[0])
