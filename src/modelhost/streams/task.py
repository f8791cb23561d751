"""A stream scored inside ``modelhost serve`` (``MODELHOST_STREAMS``): one consumer per
configured stream in every server process, beside the HTTP path and off it. A broker
that cannot be reached, or drops the connection, never stops the server: the consumer
starts again after a pause (1 s, doubling up to 30 s). Stopping the server drains it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from modelhost.serving.server import Server
from modelhost.streams import dead_letter_uri, open_sink, open_source
from modelhost.streams.config import StreamConfig
from modelhost.streams.consumer import StreamConsumer, StreamOptions
from modelhost.streams.uris import describe

log = logging.getLogger("modelhost.streams")

_PAUSE_S = (1.0, 30.0)
_DRAIN_S = 30.0


def consumer_for(config: StreamConfig, server: Server, *, name: str,
                 options: StreamOptions | None = None) -> StreamConsumer:
    """A consumer of ``config``'s stream scoring through ``server``, reporting its lag
    and outcomes in the server's metrics."""
    metrics = server.metrics
    labels = (config.model, describe(config.source), config.group)
    source = open_source(config.source, group=config.group, consumer=name,
                         claim_idle_ms=int(config.claim_idle_s * 1000),
                         start="$" if config.from_now else "0", in_flight=config.batch)
    return StreamConsumer(
        config.model, source, open_sink(config.sink),
        open_sink(config.dead_letter or dead_letter_uri(config.source)),
        server.predictor, server.observers,
        options=options or StreamOptions(batch=config.batch,
                                         max_attempts=config.max_attempts),
        on_lag=lambda events: metrics.stream_lag.labels(*labels).set(events),
        on_outcome=lambda kind, events: metrics.stream_events.labels(
            *labels, kind).inc(events))


class StreamTask:
    """One configured stream, consumed by this process (a :class:`Background` of the
    server). Its consumer is named after the host, the model and the process."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.consumer: StreamConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self, server: Server) -> None:
        name = f"{socket.gethostname()}-{self.config.model}-{os.getpid()}"
        self.consumer = consumer_for(self.config, server, name=name)
        self._task = asyncio.create_task(self._run(self.consumer),
                                         name=f"modelhost-stream-{self.config.model}")

    async def _run(self, consumer: StreamConsumer) -> None:
        pause = _PAUSE_S[0]
        where = describe(self.config.source)
        while not self._stopping.is_set():
            try:
                await consumer.run()
                return
            except Exception:  # a broker's trouble never stops the server
                log.exception("the stream %s of %s failed; starting again in %.0f s",
                              where, self.config.model, pause)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            pause = min(pause * 2, _PAUSE_S[1])

    async def stop(self) -> None:
        """Finish the events in flight (bounded), read no more."""
        self._stopping.set()
        if self.consumer is not None:
            self.consumer.stop()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, _DRAIN_S)
            except asyncio.TimeoutError:
                log.warning("the stream %s of %s did not drain within %.0f s",
                            describe(self.config.source), self.config.model, _DRAIN_S)
