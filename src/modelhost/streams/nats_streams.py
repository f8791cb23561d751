"""NATS JetStream as a source (a durable pull consumer) and as a sink.

``nats://host:port/SUBJECT`` (``tls://`` for TLS). The subject must belong to a
JetStream stream; when none holds it, one is created for it (``MODELHOST_<SUBJECT>``,
file storage, the server's default limits). The source's durable consumer is named by
the group, so every process of a group shares its messages. A message is acknowledged
only once its result or dead letter is published; one not acknowledged within
``claim_idle_ms`` (its consumer died) is delivered again by the server. An event's key
is the message's ``key`` header; a result is published with it too.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from modelhost.errors import InvalidInputError, MissingDependencyError, StoreUnavailableError
from modelhost.streams.events import Event, message
from modelhost.streams.uris import describe

log = logging.getLogger("modelhost.streams")


@dataclass(frozen=True)
class NatsSubject:
    url: str
    subject: str

    @classmethod
    def parse(cls, uri: str) -> NatsSubject:
        parts = urlsplit(uri)
        if parts.scheme not in ("nats", "tls"):
            raise InvalidInputError(f"a NATS subject is nats://host:port/SUBJECT, got "
                                    f"{describe(uri)!r}")
        subject = unquote(parts.path.lstrip("/"))
        if not subject or not parts.hostname or not re.fullmatch(r"[^\s*>]+", subject):
            raise InvalidInputError(f"name the host and one subject (no wildcard): "
                                    f"nats://host:port/SUBJECT, got {describe(uri)!r}")
        return cls(f"{parts.scheme}://{parts.netloc}", subject)


async def _connect(url: str) -> Any:
    try:
        nats: Any = importlib.import_module("nats")
    except ImportError as exc:
        raise MissingDependencyError("NATS streams", "nats") from exc
    try:
        return await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3,
                                  allow_reconnect=True, error_cb=_log_error)
    except Exception as exc:  # nats raises its own kinds, and OSError
        raise StoreUnavailableError(f"NATS at {urlsplit(url).netloc.rsplit('@', 1)[-1]}",
                                    type(exc).__name__) from exc


async def _log_error(exc: Exception) -> None:
    """nats-py's errors to our log, one line each (its default prints tracebacks)."""
    log.warning("NATS: %s: %s", type(exc).__name__, exc)


async def _stream_of(js: Any, subject: str) -> str:
    """The JetStream stream that holds ``subject``, created when there is none."""
    errors = importlib.import_module("nats.js.errors")
    try:
        name: str = await js.find_stream_name_by_subject(subject)
        return name
    except errors.NotFoundError:
        name = "MODELHOST_" + re.sub(r"[^A-Za-z0-9_-]", "_", subject)
        await js.add_stream(name=name, subjects=[subject])
        return name


class NatsSource:
    def __init__(self, where: NatsSubject, *, group: str, claim_idle_ms: int = 30_000,
                 start: str = "0", in_flight: int = 256) -> None:
        """``in_flight``: the consumer's batch, and the most messages the group holds
        unacknowledged: the server hands out no more until some are acknowledged. A
        consumer that died holding a whole batch so blocks the later messages until
        its own come back (once ``claim_idle_ms`` passed): the order per key holds
        across the crash. (One that held fewer lets as many later messages pass.)"""
        self.where = where
        self.in_flight = in_flight
        self.group = re.sub(r"[^A-Za-z0-9_-]", "_", group)
        self.claim_idle_ms = claim_idle_ms
        self._start = start
        self._nc: Any = None
        self._sub: Any = None
        self._held: dict[str, Any] = {}  # id -> the message, until acknowledged

    async def open(self) -> None:
        api = importlib.import_module("nats.js.api")
        self._nc = await _connect(self.where.url)
        js = self._nc.jetstream()
        stream = await _stream_of(js, self.where.subject)
        policy = api.DeliverPolicy.NEW if self._start == "$" else api.DeliverPolicy.ALL
        config = api.ConsumerConfig(durable_name=self.group, deliver_policy=policy,
                                    ack_policy=api.AckPolicy.EXPLICIT,
                                    ack_wait=self.claim_idle_ms / 1000.0, max_deliver=-1,
                                    max_ack_pending=self.in_flight,
                                    filter_subject=self.where.subject)
        self._sub = await js.pull_subscribe(self.where.subject, durable=self.group,
                                            stream=stream, config=config)

    async def read(self, count: int, block_ms: int) -> list[Event]:
        try:
            messages = await self._sub.fetch(count, timeout=max(block_ms, 1) / 1000.0)
        except (asyncio.TimeoutError, TimeoutError):
            return []
        events = []
        for msg in messages:
            meta = msg.metadata
            event_id = str(meta.sequence.stream)
            self._held[event_id] = msg
            key = (msg.headers or {}).get("key")
            events.append(Event(event_id, msg.data, key or None,
                                max(1, int(meta.num_delivered))))
        return events

    async def ack(self, events: Sequence[Event]) -> None:
        for event in events:
            msg = self._held.pop(event.id, None)
            if msg is not None:
                await msg.ack()
        await self._nc.flush()

    async def rewind(self) -> None:
        """Hand the held messages back at once (their results were not written)."""
        held, self._held = list(self._held.values()), {}
        for msg in held:
            await msg.nak()

    async def lag(self) -> int | None:
        info = await self._sub.consumer_info()
        return int(info.num_pending) + int(info.num_ack_pending)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()


class NatsSink:
    def __init__(self, where: NatsSubject) -> None:
        self.where = where
        self._nc: Any = None
        self._js: Any = None

    async def open(self) -> None:
        self._nc = await _connect(self.where.url)
        self._js = self._nc.jetstream()
        await _stream_of(self._js, self.where.subject)

    async def write(self, entries: Sequence[Mapping[str, bytes | str]]) -> None:
        """Publish each entry and wait for JetStream to have stored them all (sent in
        order on one connection: stored in order)."""
        if not entries:
            return
        pending = []
        for fields in entries:
            _, value, headers = message(fields)
            pending.append(asyncio.ensure_future(
                self._js.publish(self.where.subject, value, headers=headers or None)))
        await asyncio.gather(*pending)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
