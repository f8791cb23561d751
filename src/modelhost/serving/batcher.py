"""Adaptive micro-batching of prediction requests: plain asyncio, no HTTP.

:class:`AdaptiveBatcher` coalesces concurrent :meth:`~AdaptiveBatcher.submit` calls into
one model call and hands every caller exactly its own rows of the outputs.

Policy
------
* **One consumer, one batch in flight.** A single consumer task (started on the running
  event loop at the first ``submit``) takes requests in arrival order and runs one batch
  at a time in the executor thread. While the model runs, new requests queue up, so under
  load the next batch forms by itself without anybody waiting on purpose.
* **Calls cheaper than a hand-off run in place.** A batch of at most ``inline_rows``
  rows runs on the event loop itself. Handing a batch to the model's thread and its
  result back costs two thread wake-ups (tens of microseconds of CPU, and the two
  threads then contend for the interpreter), more than a linear model's arithmetic on
  64 rows, and a second arm of a traffic split adds its own, thinly filled batches. Only
  for calls that cannot wait or hang: the pool sets it for verified array kernels alone
  (:attr:`~modelhost.registry.scoring.Scorer.runs_arithmetic`), 0 (never) otherwise.
* **Forming a batch.** A batch starts at the oldest queued request (the head) and adds
  later requests whose params have the same canonical key (``json.dumps(params,
  sort_keys=True, default=str)``), first fit in arrival order, while the total stays
  within ``max_batch_size`` rows. A request that does not fit keeps its place; a head
  larger than ``max_batch_size`` runs alone, never split. Requests with other params are
  skipped, not passed over: the next batch starts at whatever is then the oldest request,
  so no params group starves.
* **Adaptive wait.** When the model is idle the head is dispatched at once. The consumer
  waits for a batch to fill only under high load, which means either

  - recent arrivals are frequent *and* concurrent: the exponentially weighted moving
    average (alpha 0.3) of inter-arrival gaps is below ``max_wait_ms`` (each gap clipped
    to ten times ``max_wait_ms``, so one idle pause resets it) and the moving average
    of "another request was still pending when this one arrived" is at least 0.5; or
  - the previous batch finished with requests still queued (a backlog).

  A lone client sending requests one after another never overlaps itself, so idle and
  sequential traffic never pays the wait. The wait ends as soon as the batch is full (or
  a fitting request does not fit any more), and at the latest when the head has been
  queued ``max_wait_ms``, or when half the time left before the tightest deadline in the
  batch has passed.
* **Bounded queue.** A request that would raise the queued rows above ``max_queue_rows``
  is refused at once with :class:`~modelhost.errors.OverloadedError`, whose
  ``retry_after`` estimates the time to drain the queue at the measured throughput (at
  least 1 s). A request larger than ``max_queue_rows`` on its own could never be queued,
  so it gets :class:`~modelhost.errors.PayloadTooLargeError` instead of a futile retry.
* **Deadlines and cancellation.** A request whose ``timeout_s`` passes, or whose caller
  is cancelled, while it is queued leaves the queue and never reaches the model. One
  whose batch is already running just stops waiting: the others of its batch are not
  affected, and a hanging model (it runs in a thread) blocks neither the event loop nor
  the deadlines of its callers.
* **Failures.** A model call that raises fails only its own batch, with
  :class:`~modelhost.errors.PredictionFailedError` naming the exception class only (never
  its message, which may hold paths or data; the full exception goes to the log). Outputs
  whose row count differs from the batch's fail the batch the same way. Later batches are
  served as usual.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelhost.errors import (
    DeadlineExceededError,
    OverloadedError,
    PayloadTooLargeError,
    PredictionFailedError,
)

__all__ = ["AdaptiveBatcher", "BatchStats", "Combine", "OnBatch", "Result", "RunBatch"]

log = logging.getLogger(__name__)

Result = tuple[npt.NDArray[Any] | None, ...]
"""One request's slice of every output of the model call, in output order."""

RunBatch = Callable[[Any, Mapping[str, Any]], Sequence[npt.NDArray[Any] | None]]
"""``run_batch(combined_inputs, params)``: called in a worker thread; returns row-aligned
outputs (e.g. ``(predictions, probabilities_or_None)``), each non-None one with exactly
as many rows as the combined inputs."""

Combine = Callable[[list[Any]], Any]
"""Joins the inputs of several requests in order, e.g. ``numpy.concatenate`` or
``pandas.concat(..., ignore_index=True)``. Not called for a batch of one request."""

OnBatch = Callable[[int, int, float], None]
"""``on_batch(rows, requests, seconds)``: called on the event loop after every model call,
successful or not, with the seconds the call took (combine and split included)."""

_ALPHA = 0.3  # weight of the newest sample in the moving averages
_GAP_CLIP = 10.0  # gaps are clipped to this many max_wait, so one idle pause resets load
_OVERLAP_HIGH = 0.5  # share of arrivals that met another pending request under load
_QUIET_GAPS = 2.0  # a batch stops filling after this many typical gaps without an arrival
_QUIET_MIN_S = 50e-6


@dataclasses.dataclass(frozen=True)
class BatchStats:
    """Counters since the batcher was created (a snapshot; see ``AdaptiveBatcher.stats``).

    ``batches``, ``requests`` and ``rows`` count model calls and what went into them,
    failed calls included; ``failed_batches`` the calls that raised or returned a wrong
    number of rows; ``dropped_requests`` requests that expired or were cancelled before
    reaching the model; ``rejected_requests`` requests refused because the queue was full;
    ``last_batch_rows`` and ``last_batch_requests`` the size of the latest model call.
    """

    batches: int = 0
    requests: int = 0
    rows: int = 0
    failed_batches: int = 0
    dropped_requests: int = 0
    rejected_requests: int = 0
    last_batch_rows: int = 0
    last_batch_requests: int = 0

    @property
    def mean_batch_rows(self) -> float:
        """Average rows per model call (0.0 before the first call)."""
        return self.rows / self.batches if self.batches else 0.0


@dataclasses.dataclass(eq=False, slots=True)
class _Request:
    inputs: Any
    rows: int
    params: Mapping[str, Any]
    key: str
    future: asyncio.Future[Result]
    enqueued_at: float
    deadline: float | None
    timeout_s: float | None
    queued: bool = True


class _BadOutputError(Exception):
    """run_batch returned something that cannot be split; ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _CombineError(Exception):
    """combine raised; kept apart from model errors for a clearer message."""


def _params_key(params: Mapping[str, Any]) -> str:
    if not params:  # the common case, and no JSON to build
        return ""
    return json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))


def _split(outputs: object, sizes: list[int]) -> list[Result]:
    """Cut every output into consecutive row slices of ``sizes``; check the row counts."""
    total = sum(sizes)
    if isinstance(outputs, np.ndarray) or not isinstance(outputs, Sequence):
        raise _BadOutputError(
            f"it returned {type(outputs).__name__} instead of a sequence of outputs")
    arrays: list[npt.NDArray[Any] | None] = []
    for output in outputs:
        if output is None:
            arrays.append(None)
            continue
        array = np.asarray(output)
        if array.ndim == 0:
            raise _BadOutputError(f"it returned a single value for {total} rows")
        if array.shape[0] != total:
            raise _BadOutputError(f"it returned {array.shape[0]} predictions for {total} rows")
        arrays.append(array)
    results: list[Result] = []
    start = 0
    for size in sizes:
        stop = start + size
        results.append(tuple(None if a is None else a[start:stop] for a in arrays))
        start = stop
    return results


class AdaptiveBatcher:
    """Coalesces concurrent prediction requests into model calls of up to
    ``max_batch_size`` rows; see the module docstring for the policy.

    Args:
        run_batch: the model call, run in ``executor`` with ``(combined_inputs, params)``.
        combine: joins the inputs of several requests (see :data:`Combine`).
        max_batch_size: most rows per model call (a larger single request runs alone).
        max_wait_ms: longest time a request may wait for its batch to fill under load;
            0 disables waiting.
        max_queue_rows: most rows queued (not yet in a model call) at once.
        executor: where ``run_batch`` runs; by default a single-thread pool owned by the
            batcher and shut down by :meth:`close`.
        clock: monotonic seconds, for arrival statistics, deadlines and timings.
        name: what the error messages call the model.
        on_batch: metrics hook (see :data:`OnBatch`).
        inline_rows: batches of at most this many rows run on the event loop instead of
            in ``executor`` (0: never); only for calls that are cheap and cannot block.

    Raises:
        ValueError: a limit is out of range.
    """

    def __init__(self, run_batch: RunBatch, *, combine: Combine, max_batch_size: int = 64,
                 max_wait_ms: float = 2.0, max_queue_rows: int = 4096,
                 executor: concurrent.futures.Executor | None = None,
                 clock: Callable[[], float] = time.monotonic, name: str = "model",
                 on_batch: OnBatch | None = None, inline_rows: int = 0) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if not max_wait_ms >= 0 or math.isinf(max_wait_ms):
            raise ValueError(f"max_wait_ms must be a finite number >= 0, got {max_wait_ms}")
        if max_queue_rows < 1:
            raise ValueError(f"max_queue_rows must be at least 1, got {max_queue_rows}")
        if inline_rows < 0:
            raise ValueError(f"inline_rows must be at least 0, got {inline_rows}")
        self._run_batch = run_batch
        self._inline_rows = inline_rows
        self._combine = combine
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000.0
        self._max_queue_rows = max_queue_rows
        self._owns_executor = executor is None
        self._executor: concurrent.futures.Executor = executor or (
            concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"modelhost-batch-{name}"))
        self._clock = clock
        self._name = name
        self._on_batch = on_batch

        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._pending = 0  # submits waiting for their result
        self._in_flight = False
        self._closed = False
        self._backlog = False
        self._last_arrival: float | None = None
        self._gap_ewma: float | None = None
        self._overlap_ewma = 0.0
        self._rows_per_s: float | None = None
        self._stats = BatchStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None

    # --- observability ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a model call (the running batch not included)."""
        return self._queued_rows

    @property
    def queued_requests(self) -> int:
        return len(self._queue)

    @property
    def inline_rows(self) -> int:
        """Batches of at most this many rows run on the event loop (0: none do)."""
        return self._inline_rows

    @property
    def in_flight(self) -> bool:
        """True while a model call runs."""
        return self._in_flight

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> BatchStats:
        return self._stats

    # --- public API ------------------------------------------------------------------

    async def submit(self, inputs: Any, *, rows: int, params: Mapping[str, Any] | None = None,
                     timeout_s: float | None = None) -> Result:
        """Predict ``inputs`` (``rows`` rows) as part of a batch.

        Args:
            inputs: this request's inputs, in the form ``combine`` and ``run_batch`` take.
            rows: how many rows ``inputs`` holds.
            params: inference parameters; only requests with equal params share a batch.
            timeout_s: deadline for the result, from now; None waits as long as it takes.

        Returns:
            This request's rows of every output of the model call, in output order.

        Raises:
            OverloadedError: the queue is full or the batcher is closed.
            PayloadTooLargeError: ``rows`` exceeds ``max_queue_rows``.
            DeadlineExceededError: no result within ``timeout_s``.
            PredictionFailedError: the model call raised or returned a wrong row count.
            ValueError: ``rows`` is negative.
        """
        if rows < 0:
            raise ValueError(f"rows must be >= 0, got {rows}")
        if self._closed:
            raise OverloadedError(self._name, retry_after=1.0)
        if rows > self._max_queue_rows:
            raise PayloadTooLargeError("the request", self._max_queue_rows, "rows")
        if self._queued_rows + rows > self._max_queue_rows:
            self._stats = dataclasses.replace(
                self._stats, rejected_requests=self._stats.rejected_requests + 1)
            raise OverloadedError(self._name, retry_after=self._retry_after())
        if timeout_s is not None and timeout_s <= 0:
            raise DeadlineExceededError(timeout_s)
        loop = self._ensure_started()
        params = params if params is not None else {}
        now = self._clock()
        self._record_arrival(now)
        future: asyncio.Future[Result] = loop.create_future()
        request = _Request(
            inputs=inputs, rows=rows, params=params, key=_params_key(params), future=future,
            enqueued_at=now, deadline=None if timeout_s is None else now + timeout_s,
            timeout_s=timeout_s)
        self._queue.append(request)
        self._queued_rows += rows
        self._pending += 1
        self._wake()
        # A timer rather than asyncio.wait_for: no extra task per request on the hot path.
        timer = None if timeout_s is None else loop.call_later(
            timeout_s, self._expire, request)
        try:
            return await future
        except DeadlineExceededError:
            self._abandon(request)
            raise
        except asyncio.CancelledError:
            self._abandon(request)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._pending -= 1

    async def close(self, *, drain: bool = True) -> None:
        """Stop accepting requests; later submits raise OverloadedError.

        With ``drain`` the queued requests are still predicted and this returns when they
        are done (a hanging model call keeps it waiting: bound it with ``asyncio.wait_for``
        and fall back to ``drain=False``); without it they fail with OverloadedError at
        once and a running model call is abandoned to its thread. Safe to call more than
        once.
        """
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            if drain:
                self._wake()
            else:
                task.cancel()
            await asyncio.wait({task})
        self._fail_queued()
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # --- arrivals ----------------------------------------------------------------------

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError(
                f"the batcher of {self._name} belongs to another event loop; "
                "create one batcher per event loop")
        if self._task is None:
            self._loop = loop
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._consume(), name=f"batcher {self._name}")
            self._task.add_done_callback(self._consumer_done)
        return loop

    def _record_arrival(self, now: float) -> None:
        if self._last_arrival is not None:
            gap = min(max(now - self._last_arrival, 0.0), _GAP_CLIP * self._max_wait)
            self._gap_ewma = gap if self._gap_ewma is None else (
                self._gap_ewma + _ALPHA * (gap - self._gap_ewma))
        self._last_arrival = now
        overlap = 1.0 if self._pending else 0.0
        self._overlap_ewma += _ALPHA * (overlap - self._overlap_ewma)

    def _retry_after(self) -> float:
        if not self._rows_per_s:
            return 1.0
        return max(1.0, self._queued_rows / self._rows_per_s)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _unqueue(self, request: _Request) -> None:
        request.queued = False
        self._queued_rows -= request.rows

    @staticmethod
    def _expire(request: _Request) -> None:
        if not request.future.done():
            request.future.set_exception(DeadlineExceededError(request.timeout_s or 0.0))

    def _abandon(self, request: _Request) -> None:
        """The caller stopped waiting; take its request out of the queue if still there."""
        if request.queued:
            self._queue.remove(request)
            self._unqueue(request)
            self._stats = dataclasses.replace(
                self._stats, dropped_requests=self._stats.dropped_requests + 1)

    def _fail_queued(self) -> None:
        while self._queue:
            request = self._queue.popleft()
            self._unqueue(request)
            if not request.future.done():
                request.future.set_exception(OverloadedError(self._name, retry_after=1.0))

    # --- the consumer ------------------------------------------------------------------

    def _consumer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # a bug; let the next submit start a fresh consumer
            log.error("the batcher of %s stopped", self._name, exc_info=exc)
            self._task = None
            self._fail_queued()

    async def _consume(self) -> None:
        assert self._wakeup is not None
        try:
            while True:
                self._prune()
                if not self._queue:
                    if self._closed:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if not self._closed and self._under_load():
                    await self._wait_for_fill()
                batch = self._take_batch()
                if batch:
                    await self._dispatch(batch)
        finally:
            self._fail_queued()

    def _under_load(self) -> bool:
        if self._max_wait <= 0:
            return False
        if self._backlog:
            return True
        return (self._gap_ewma is not None and self._gap_ewma < self._max_wait
                and self._overlap_ewma >= _OVERLAP_HIGH)

    def _prune(self) -> None:
        """Drop queued requests whose caller left or whose deadline passed."""
        now = self._clock()
        dropped = 0
        for request in self._queue:
            if request.future.done():
                self._unqueue(request)
            elif request.deadline is not None and now >= request.deadline:
                self._unqueue(request)
                request.future.set_exception(DeadlineExceededError(request.timeout_s or 0.0))
            else:
                continue
            dropped += 1
        if dropped:
            self._queue = deque(r for r in self._queue if r.queued)
            self._stats = dataclasses.replace(
                self._stats, dropped_requests=self._stats.dropped_requests + dropped)

    def _plan(self) -> tuple[list[_Request], bool]:
        """The next batch (head first, first fit by arrival) and whether it is full."""
        head = self._queue[0]
        batch = [head]
        rows = head.rows
        full = rows >= self._max_batch_size
        for request in self._queue:
            if rows >= self._max_batch_size:
                full = True
                break
            if request is head or request.key != head.key or request.future.done():
                continue
            if rows + request.rows > self._max_batch_size:
                full = True  # waiting longer would not bring this one in
                continue
            batch.append(request)
            rows += request.rows
        return batch, full or rows >= self._max_batch_size

    async def _wait_for_fill(self) -> None:
        assert self._wakeup is not None
        batch, full = self._plan()
        if full:
            return
        now = self._clock()
        budget = batch[0].enqueued_at + self._max_wait - now
        deadlines = [r.deadline for r in batch if r.deadline is not None]
        if deadlines:
            budget = min(budget, (min(deadlines) - now) / 2)
        if budget <= 0:
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + budget
        # Keep waiting only while requests keep arriving: when none came for about two
        # typical gaps, the clients that are coming are all here (a few closed-loop
        # clients never fill a batch, and making them wait max_wait each time would
        # only add latency).
        quiet = max(_QUIET_MIN_S, _QUIET_GAPS * (self._gap_ewma or self._max_wait))
        while True:
            self._wakeup.clear()
            remaining = end - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wakeup.wait(), min(remaining, quiet))
            except asyncio.TimeoutError:
                return
            if self._closed or not self._queue or self._plan()[1]:
                return

    def _take_batch(self) -> list[_Request]:
        self._prune()
        if not self._queue:
            return []
        batch, _ = self._plan()
        for request in batch:
            self._unqueue(request)
        self._queue = deque(r for r in self._queue if r.queued)
        return batch

    def _execute(self, inputs: list[Any], sizes: list[int],
                 params: Mapping[str, Any]) -> list[Result]:
        """Runs in the executor: combine, call the model, split the outputs."""
        if len(inputs) == 1:
            combined = inputs[0]
        else:
            try:
                combined = self._combine(inputs)
            except Exception as exc:
                raise _CombineError(type(exc).__name__) from exc
        return _split(self._run_batch(combined, params), sizes)

    async def _dispatch(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        rows = sum(r.rows for r in batch)
        reason: str | None = None
        results: list[Result] = []
        started = self._clock()
        self._in_flight = True
        try:
            if rows <= self._inline_rows:
                results = self._execute([r.inputs for r in batch], [r.rows for r in batch],
                                        batch[0].params)
            else:
                results = await loop.run_in_executor(
                    self._executor, self._execute, [r.inputs for r in batch],
                    [r.rows for r in batch], batch[0].params)
        except _BadOutputError as exc:
            reason = exc.reason
            log.error("%s: model call on %d rows failed: %s", self._name, rows, reason)
        except _CombineError as exc:
            reason = f"its batch inputs could not be combined ({exc})"
            log.exception("%s: combining %d requests failed", self._name, len(batch))
        except asyncio.CancelledError:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(OverloadedError(self._name, retry_after=1.0))
            raise
        except Exception as exc:
            reason = f"it raised {type(exc).__name__}"
            log.exception("%s: model call on %d rows failed", self._name, rows)
        finally:
            self._in_flight = False
        seconds = max(self._clock() - started, 0.0)

        if reason is None:
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result(result)
        else:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(PredictionFailedError(reason))

        if seconds > 0 and reason is None:
            rate = rows / seconds
            self._rows_per_s = rate if self._rows_per_s is None else (
                self._rows_per_s + _ALPHA * (rate - self._rows_per_s))
        self._backlog = bool(self._queue)
        stats = self._stats
        self._stats = dataclasses.replace(
            stats, batches=stats.batches + 1, requests=stats.requests + len(batch),
            rows=stats.rows + rows, failed_batches=stats.failed_batches + int(reason is not None),
            last_batch_rows=rows, last_batch_requests=len(batch))
        if self._on_batch is not None:
            try:
                self._on_batch(rows, len(batch), seconds)
            except Exception:
                log.exception("%s: the on_batch hook failed", self._name)
