"""Score a stream's events with the server's own predictor: the deployment's routing (the
event's key is the routing key), validation, the adaptive batcher, the cache, and the
observers (metrics, prediction log, drift profiles), exactly as an HTTP request.

Delivery is at least once. The consumer reads a bounded batch of events, scores them
concurrently (the batcher combines them into model calls), writes the results in the
order the events came (so per key too), then the dead letters, and only then
acknowledges the events. A crash at any point leaves the unacknowledged events pending,
read again on restart (or taken over by another consumer): an event may be scored twice,
never lost; its result names its ``source_id`` and ``request_id`` to spot that.

An event goes to the dead letters, with its original bytes and the reason, when it can
never be scored (not JSON, rows the signature refuses, a model or version not found: a
4xx answer over HTTP, at once), when scoring keeps failing (the model raises, times
out, or is not ready: retried, up to ``max_attempts`` tries), or when the source has
handed it out ``max_attempts`` times already without an outcome (the consumer died on
it each time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modelhost.errors import ModelhostError
from modelhost.serving.errors import status_for
from modelhost.serving.http import new_request_id
from modelhost.serving.observers import Observation, Observers
from modelhost.serving.predictor import Prediction, Predictor
from modelhost.serving.routes import Action, Route
from modelhost.serving.routes import Protocol as RouteProtocol
from modelhost.streams.events import Event, Payload, dead_letter_fields, parse, result_fields

log = logging.getLogger("modelhost.streams")

_CLOSE_S = 5.0  # the longest a source or sink may take to close

STREAM_ROUTE = Route(RouteProtocol.STREAM, Action.PREDICT, frozenset())
"""What the observers see as the route of an event (``protocol="stream"`` in metrics)."""


class Source(Protocol):
    async def open(self) -> None: ...
    async def read(self, count: int, block_ms: int) -> list[Event]: ...
    async def ack(self, events: Sequence[Event]) -> None: ...
    async def rewind(self) -> None: ...
    async def lag(self) -> int | None: ...
    async def close(self) -> None: ...


class Sink(Protocol):
    async def open(self) -> None: ...
    async def write(self, entries: Sequence[Mapping[str, bytes | str]]) -> None: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class StreamOptions:
    batch: int = 256  # events read and in flight at once: the backpressure
    block_ms: int = 100  # how long one read waits for events (and a stop for the read)
    max_attempts: int = 3  # tries of an event whose scoring fails for a passing reason
    retry_pause_s: float = 0.2  # the first pause between tries (doubled each time)
    write_pause_s: float = 1.0  # the pause after the sink failed, before trying again
    idle_exit_s: float | None = None  # stop once no event came for this long (a backfill)


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: dict[str, str] | None = None
    dead: dict[str, bytes | str] | None = None


@dataclass
class Counts:
    """What the consumer did since it started."""

    scored: int = 0  # events whose result was written
    dead: int = 0  # events sent to the dead letters
    retries: int = 0  # extra tries of events whose scoring failed for a passing reason
    write_failures: int = 0  # writes to the sink (or dead letters) that failed


class StreamConsumer:
    """Reads ``source``, scores each event with ``model`` through ``predictor``, writes
    the results to ``sink`` and the events it cannot score to ``dead_letters``."""

    def __init__(self, model: str, source: Source, sink: Sink, dead_letters: Sink,
                 predictor: Predictor, observers: Observers, *,
                 options: StreamOptions | None = None,
                 on_lag: Callable[[int], None] | None = None,
                 on_outcome: Callable[[str, int], None] | None = None) -> None:
        """``on_lag(events)``: the group's lag, every few seconds; ``on_outcome(kind,
        events)``: events acknowledged as ``scored`` or ``dead_letter``."""
        self.model = model
        self.source = source
        self.sink = sink
        self.dead_letters = dead_letters
        self.predictor = predictor
        self.observers = observers
        self.options = options or StreamOptions()
        self.counts = Counts()
        self._on_lag = on_lag
        self._on_outcome = on_outcome
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the events in flight (write and acknowledge them), read no more."""
        self._stopping.set()

    async def run(self) -> None:
        """Until :meth:`stop`: read, score, write, acknowledge. A batch is written while
        the next one is read and scored (the writes stay in order: a batch's results
        are written only once the batch before it is acknowledged)."""
        for end in (self.source, self.sink, self.dead_letters):
            await end.open()
        lag_task = asyncio.create_task(self._report_lag(), name="modelhost-stream-lag")
        idle_exit_s = self.options.idle_exit_s
        last_event = time.monotonic()
        committing: asyncio.Task[bool] | None = None
        try:
            while not self._stopping.is_set():
                events = await self.source.read(self.options.batch, self.options.block_ms)
                if events:
                    outcomes = await self._score_all(events)
                    if committing is not None and not await committing:
                        # The batch before was not written: this one waits its turn too.
                        await self.source.rewind()
                        committing = None
                        continue
                    committing = asyncio.create_task(self._commit(events, outcomes))
                    last_event = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - last_event >= idle_exit_s:
                    break
        finally:
            if committing is not None:
                with contextlib.suppress(Exception):
                    await committing
            lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_task
            for end in (self.source, self.sink, self.dead_letters):
                # Bounded: a client saying goodbye to a broker that is gone (Kafka leaves
                # its group) must not keep a stopping consumer alive.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(end.close(), _CLOSE_S)

    async def process(self, events: Sequence[Event]) -> bool:
        """Score ``events``, then write and acknowledge them (see :meth:`_commit`)."""
        return await self._commit(events, await self._score_all(events))

    async def _score_all(self, events: Sequence[Event]) -> list[_Outcome]:
        return await asyncio.gather(*(self._score(e) for e in events))

    async def _commit(self, events: Sequence[Event], outcomes: Sequence[_Outcome]) -> bool:
        """Write the results (in order), then the dead letters, then acknowledge the
        events. If a write fails, nothing is acknowledged: the events are read again
        (scored again) after a pause; returns whether it all went through."""
        results = [o.result for o in outcomes if o.result is not None]
        dead = [o.dead for o in outcomes if o.dead is not None]
        try:
            await self.sink.write(results)
            await self.dead_letters.write(dead)
            await self.source.ack(events)
        except Exception:  # a broker hiccup: read these again, later
            self.counts.write_failures += 1
            log.exception("writing the results of %d events failed; they will be read "
                          "again", len(events))
            await self.source.rewind()
            await asyncio.sleep(self.options.write_pause_s)
            return False
        self.counts.scored += len(results)
        self.counts.dead += len(dead)
        if self._on_outcome is not None:
            for kind, count in (("scored", len(results)), ("dead_letter", len(dead))):
                if count:
                    self._on_outcome(kind, count)
        return True

    async def _score(self, event: Event) -> _Outcome:
        attempts = self.options.max_attempts
        if event.deliveries > attempts:
            return _Outcome(dead=dead_letter_fields(
                event, f"handed out {event.deliveries} times without an outcome"))
        try:
            payload = parse(event.body)
        except ModelhostError as exc:
            return _Outcome(dead=dead_letter_fields(event, exc.message))
        pause = self.options.retry_pause_s
        for attempt in range(1, attempts + 1):
            try:
                return _Outcome(result=await self._predict(event, payload))
            except ModelhostError as exc:
                status = status_for(exc)
                if (status < 500 and status != 429) or attempt == attempts:
                    return _Outcome(dead=dead_letter_fields(event, exc.message))
            except Exception as exc:  # noqa: BLE001  # the model raised: say so, no details
                if attempt == attempts:
                    return _Outcome(dead=dead_letter_fields(
                        event, f"the model raised {type(exc).__name__} "
                               f"{attempts} times"))
            self.counts.retries += 1
            await asyncio.sleep(pause)
            pause *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _predict(self, event: Event, payload: Payload) -> dict[str, str]:
        """One try: the predictor's answer as the result's fields; observed as an HTTP
        request is (its error too)."""
        predictor = self.predictor
        started = time.perf_counter()
        rid = new_request_id()
        resolved = prediction = None
        code = None
        status = 200
        try:
            rows = predictor.check(payload.inputs, payload.params)
            resolved = await predictor.resolve(self.model, None, event.key)
            prediction = await predictor.predict(resolved, payload.inputs, payload.params,
                                                 rows=rows)
        except ModelhostError as exc:
            code, status = exc.code, status_for(exc)
            raise
        except Exception:
            code, status = "internal", 500
            log.exception("event %s failed", event.id)
            raise
        finally:
            self._observe(resolved.served.version.version if resolved else None,
                          resolved.arm if resolved else None, prediction, status, code,
                          time.perf_counter() - started, rid)
        return result_fields(event, payload, version=prediction.served.version.version,
                             request_id=rid, predictions=prediction.predictions,
                             probabilities=prediction.probabilities)

    def _observe(self, version: str | None, arm: Any, prediction: Prediction | None,
                 status: int, code: str | None, latency_s: float, rid: str) -> None:
        at = time.time()
        if prediction is None:
            observation = Observation(STREAM_ROUTE, self.model, version, arm, status,
                                      latency_s, 0, rid, at, code)
        else:
            observation = Observation(STREAM_ROUTE, self.model, version, arm, status,
                                      latency_s, prediction.rows, rid, at, code,
                                      prediction.cached, prediction.inputs,
                                      prediction.predictions, prediction.probabilities)
        self.observers.notify(observation)

    async def _report_lag(self, every_s: float = 5.0) -> None:
        if self._on_lag is None:
            return
        while True:
            with contextlib.suppress(Exception):  # a metric never stops the stream
                lag = await self.source.lag()
                if lag is not None:
                    self._on_lag(lag)
            await asyncio.sleep(every_s)
