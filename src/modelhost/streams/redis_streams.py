"""Redis Streams as a source (a consumer group) and as a sink.

``redis://host:port/STREAM`` (``rediss://`` for TLS; ``?db=N`` for another database).
The source reads with ``XREADGROUP``; an event is acknowledged (``XACK``) only once its
result or dead letter is written. Events it was handed before a crash are read again
when the consumer of the same name starts (its pending entries), and those of a
consumer that stopped answering are taken over with ``XAUTOCLAIM`` once they have been
pending ``claim_idle_ms``: every event is scored at least once.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from modelhost.errors import InvalidInputError, MissingDependencyError, StoreUnavailableError
from modelhost.streams.events import Event
from modelhost.streams.uris import describe


@dataclass(frozen=True)
class RedisStream:
    """Where a stream is: the server's URL (without the stream) and the stream's name."""

    url: str
    stream: str

    @classmethod
    def parse(cls, uri: str) -> RedisStream:
        parts = urlsplit(uri)
        if parts.scheme not in ("redis", "rediss"):
            raise InvalidInputError(f"a Redis stream is redis://host:port/STREAM, got "
                                    f"{describe(uri)!r}")
        stream = unquote(parts.path.lstrip("/"))
        if not stream or not parts.hostname:
            raise InvalidInputError(f"name the host and the stream: redis://host:port/"
                                    f"STREAM, got {describe(uri)!r}")
        db = parse_qs(parts.query).get("db", ["0"])[0]
        if not db.isdigit():
            raise InvalidInputError(f"?db= is a database number, got {db[:20]!r}")
        return cls(f"{parts.scheme}://{parts.netloc}/{db}", stream)

    def sibling(self, stream: str) -> RedisStream:
        return RedisStream(self.url, stream)


def connect(url: str) -> Any:
    try:
        redis: Any = importlib.import_module("redis.asyncio")
    except ImportError as exc:
        raise MissingDependencyError("Redis streams", "redis") from exc
    return redis.from_url(url, decode_responses=False)


class RedisSource:
    """One consumer of a consumer group on a stream."""

    def __init__(self, where: RedisStream, *, group: str, consumer: str,
                 claim_idle_ms: int = 30_000, start: str = "0") -> None:
        """``start``: where a group that does not exist yet begins: ``0`` (every event
        in the stream) or ``$`` (only those added from now)."""
        self.where = where
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self._start = start
        self._redis: Any = None
        self._own_pending = True  # first, what this consumer was handed before a restart
        self._pending_from = "0"  # ...after the last of them already handed out again
        self._claim_from = "0-0"

    async def open(self) -> None:
        import redis.exceptions as errors

        self._redis = connect(self.where.url)
        try:
            await self._redis.xgroup_create(self.where.stream, self.group, id=self._start,
                                            mkstream=True)
        except errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: join it
                raise
        except (errors.ConnectionError, OSError) as exc:
            raise StoreUnavailableError(f"Redis at {_host(self.where.url)}",
                                        type(exc).__name__) from exc

    async def read(self, count: int, block_ms: int) -> list[Event]:
        """Up to ``count`` events: this consumer's own pending ones first (after a
        restart), then those of a consumer gone quiet, then new ones (waiting up to
        ``block_ms`` for some)."""
        if self._own_pending:
            events = await self._read_group(self._pending_from, count, block_ms=None)
            if events:
                self._pending_from = events[-1].id
                return await self._with_deliveries(events)
            self._own_pending = False
        claimed = await self._claim(count)
        if claimed:
            return claimed
        return await self._read_group(">", count, block_ms=block_ms)

    async def _read_group(self, start: str, count: int, *, block_ms: int | None
                          ) -> list[Event]:
        answer = await self._redis.xreadgroup(self.group, self.consumer,
                                              {self.where.stream: start}, count=count,
                                              block=block_ms)
        if not answer:
            return []
        entries = answer[0][1] if isinstance(answer, list) else next(iter(answer.values()))
        return [_event(entry_id, fields) for entry_id, fields in entries
                if fields is not None]  # a pending entry trimmed from the stream: None

    async def _claim(self, count: int) -> list[Event]:
        """Entries pending in another consumer for ``claim_idle_ms``: it died or hangs."""
        answer = await self._redis.xautoclaim(self.where.stream, self.group, self.consumer,
                                              min_idle_time=self.claim_idle_ms,
                                              start_id=self._claim_from, count=count)
        next_id, entries = answer[0], answer[1]
        self._claim_from = next_id.decode() if isinstance(next_id, bytes) else str(next_id)
        events = [_event(entry_id, fields) for entry_id, fields in entries if fields]
        return await self._with_deliveries(events) if events else []

    async def _with_deliveries(self, events: list[Event]) -> list[Event]:
        """The events with how often the group has handed each out."""
        pending = await self._redis.xpending_range(self.where.stream, self.group,
                                                   min=events[0].id, max=events[-1].id,
                                                   count=len(events) * 2)
        times = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [Event(e.id, e.body, e.key, max(1, times.get(e.id, 1))) for e in events]

    async def rewind(self) -> None:
        """Read this consumer's pending events again (their results were not written)."""
        self._own_pending = True
        self._pending_from = "0"

    async def ack(self, events: Sequence[Event]) -> None:
        if events:
            await self._redis.xack(self.where.stream, self.group, *[e.id for e in events])

    async def lag(self) -> int | None:
        """Entries of the stream the group has not read yet (Redis 7's ``lag``), plus
        those read and not yet acknowledged."""
        for group in await self._redis.xinfo_groups(self.where.stream):
            if _text(group.get("name", b"")) == self.group:
                lag = group.get("lag")
                pending = int(group.get("pending") or 0)
                return (int(lag) if lag is not None else 0) + pending
        return None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


class RedisSink:
    """Appends entries to a stream (``maxlen``: trim it to about that many)."""

    def __init__(self, where: RedisStream, *, maxlen: int | None = None) -> None:
        self.where = where
        self.maxlen = maxlen
        self._redis: Any = None

    async def open(self) -> None:
        self._redis = connect(self.where.url)

    async def write(self, entries: Sequence[Mapping[str, bytes | str]]) -> None:
        """All of ``entries`` in order, in one round trip (a transaction: all or none)."""
        if not entries:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for fields in entries:
                pipe.xadd(self.where.stream, dict(fields), maxlen=self.maxlen,
                          approximate=True)
            await pipe.execute()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def _event(entry_id: Any, fields: Mapping[bytes, bytes]) -> Event:
    body = fields.get(b"body")
    if body is None and len(fields) == 1:  # a producer that named its one field otherwise
        body = next(iter(fields.values()))
    key = fields.get(b"key")
    return Event(_text(entry_id), body or b"", key.decode("utf-8", "replace") if key
                 else None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"
