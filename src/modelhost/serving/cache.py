"""The prediction cache: answers already computed by one model version, keyed by its input.

A cache is opt-in per model. :func:`open_cache` gives an in-process :class:`LRUCache` by
default and a :class:`RedisCache` (shared by every replica) when ``MODELHOST_REDIS_URL``
is set. Keys come from :func:`cache_key`: the version's artifact digest plus the canonical
JSON of the input and params, so an entry never answers for another version, and all
entries of one version share the prefix ``mh:pred:<digest[:16]>:`` and can be dropped
together.

The cache is an optimisation, never a dependency: a Redis that is down, slow or
misbehaving degrades to "no cache" and is never an error for the caller.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from modelhost.errors import MissingDependencyError

__all__ = [
    "CacheStats",
    "LRUCache",
    "PredictionCache",
    "RedisCache",
    "cache_key",
    "open_cache",
    "version_prefix",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

KEY_NAMESPACE = "mh:pred:"
_DIGEST_CHARS = 16
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
_SCAN_COUNT = 1000
_UNLINK_BATCH = 500
_GLOB_SPECIALS = str.maketrans({c: "\\" + c for c in "*?[]\\"})


# --- keys -----------------------------------------------------------------------------


def version_prefix(artifact_digest: str) -> str:
    """The prefix shared by every key of one model version: ``mh:pred:<digest[:16]>:``."""
    return f"{KEY_NAMESPACE}{artifact_digest[:_DIGEST_CHARS]}:"


def cache_key(artifact_digest: str, payload: Any, params: Mapping[str, Any] | None) -> str:
    """The cache key of one prediction request to one model version.

    The key is ``mh:pred:<digest[:16]>:<sha256 hex>``, where the hash covers the full
    digest and the canonical JSON of ``payload`` and ``params`` (keys sorted; numpy
    arrays and scalars as their values; NaN and infinities kept apart from ``null``).
    Equal inputs give equal keys in every process; changing the digest, a value or a
    param changes the key. The same data sent as records or as columns may give two
    keys, which only costs a miss.

    Raises:
        TypeError: the payload holds a value with no JSON form (the caller should
            then predict without the cache).
    """
    document = {"params": dict(params) if params else {}, "payload": payload}
    encoded = orjson.dumps(document, default=_json_default, option=_JSON_OPTIONS)
    digest = hashlib.sha256(artifact_digest.encode())
    digest.update(b"\x00")
    digest.update(encoded)
    if b"null" in encoded:
        # orjson writes NaN and +-Inf as null; say where the non-finite ones were so
        # that [NaN] and [None] (or [Inf]) never share a key. Runs only when a null
        # appears in the text, so most payloads pay nothing for it.
        marks = sorted(orjson.dumps(mark) for mark in _non_finite(document, ()))
        if marks:
            digest.update(b"\x00" + b"\x00".join(marks))
    return version_prefix(artifact_digest) + digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # dtypes or layouts orjson does not take natively
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=lambda item: orjson.dumps(item, default=_json_default,
                                                           option=_JSON_OPTIONS))
    raise TypeError(f"cannot build a cache key from a value of type {type(value).__name__}")


def _non_finite(value: Any, path: tuple[Any, ...]) -> Iterator[list[Any]]:
    """``[path, repr]`` for every NaN or infinity inside ``value``."""
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            yield [list(path), repr(float(value))]
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, str(key)))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))
    elif isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            for position in np.argwhere(~np.isfinite(value)):
                where = position.tolist()
                yield [[*path, *where], repr(value[tuple(where)].item())]
        elif value.dtype.kind == "O":
            yield from _non_finite(value.tolist(), path)


# --- the interface --------------------------------------------------------------------


@dataclass(frozen=True)
class CacheStats:
    """Counters for metrics, totals since the cache was opened.

    ``hits + misses`` is the number of lookups: a lookup that Redis could not answer
    (an error, or skipped while Redis is considered down) is a miss. ``errors`` counts
    failed operations against the backend. ``size`` is the number of entries held, when
    the backend knows it cheaply (in-process only).
    """

    hits: int = 0
    misses: int = 0
    errors: int = 0
    size: int | None = None

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class PredictionCache(abc.ABC):
    """Bytes by key, with an optional time to live. No method raises on backend failure."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value stored at ``key``, or ``None`` when absent, expired or unreachable."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        """Store ``value`` at ``key``, for ``ttl_s`` seconds when given (best effort).

        A ``ttl_s`` of zero or less stores nothing.
        """

    @abc.abstractmethod
    async def drop_version(self, artifact_digest: str) -> None:
        """Remove every entry of the version with this artifact digest (best effort)."""

    @property
    @abc.abstractmethod
    def stats(self) -> CacheStats:
        """A snapshot of the counters."""

    async def close(self) -> None:  # noqa: B027 - an in-process cache has nothing to close
        """Release connections; the cache must not be used afterwards."""


# --- in-process -----------------------------------------------------------------------


class LRUCache(PredictionCache):
    """A bounded, in-process least-recently-used cache.

    Bounded by entry count and by bytes (value plus key length); the least recently used
    entries leave first, and a value larger than ``max_bytes`` is not stored. Every
    operation is O(1) except :meth:`drop_version`, which scans the keys. Safe to share
    between threads and asyncio tasks: each operation runs under one lock and never
    awaits while holding it.

    Args:
        max_entries: the most entries held at once.
        max_bytes: the most bytes held at once.
        clock: monotonic seconds, for time to live (tests pass a fake).
    """

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024, *,
                 clock: Clock = time.monotonic) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(
                f"an LRU cache needs max_entries >= 1 and max_bytes >= 1, "
                f"got {max_entries} and {max_bytes}"
            )
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes currently held (values plus keys)."""
        return self._bytes

    async def get(self, key: str) -> bytes | None:
        return self.get_nowait(key)

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        self.set_nowait(key, value, ttl_s=ttl_s)

    def get_nowait(self, key: str) -> bytes | None:
        """:meth:`get` without the event loop, for synchronous callers."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[1] is not None and self._clock() >= entry[1]:
                self._remove(key)
                entry = None
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]

    def set_nowait(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        """:meth:`set` without the event loop, for synchronous callers."""
        cost = len(value) + len(key)
        with self._lock:
            if key in self._entries:
                self._remove(key)
            if (ttl_s is not None and ttl_s <= 0) or cost > self.max_bytes:
                return
            expires = None if ttl_s is None else self._clock() + ttl_s
            self._entries[key] = (bytes(value), expires)
            self._bytes += cost
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._remove(next(iter(self._entries)))

    async def drop_version(self, artifact_digest: str) -> None:
        prefix = version_prefix(artifact_digest)
        with self._lock:
            for key in [k for k in self._entries if k.startswith(prefix)]:
                self._remove(key)

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(hits=self._hits, misses=self._misses, errors=0,
                              size=len(self._entries))

    def _remove(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self._bytes -= len(value) + len(key)


# --- Redis ----------------------------------------------------------------------------


class RedisCache(PredictionCache):
    """A cache in Redis, shared by every replica pointed at the same server.

    Values are stored with ``SET`` (``PX`` when a time to live is given). Any failure
    (refused connection, timeout, error reply) counts an error and opens a circuit for
    ``retry_after_s``: meanwhile lookups miss and stores are skipped without contacting
    Redis. The first call after that is a probe (the others keep skipping while it runs);
    only a successful probe closes the circuit. One warning is logged per outage and one
    info line when Redis answers again, never one per request. No method raises because
    of Redis.

    The constructor does no I/O; connections open on first use, inside the running event
    loop, and :meth:`close` must be awaited in that same loop.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        socket_timeout_s: bound on each reply; a cache slower than this is worse than
            no cache.
        retry_after_s: how long to leave Redis alone after a failure.
        connect_timeout_s: bound on opening a connection and on waiting for a free one
            from the pool. Connections are reused, so this is paid rarely; it is longer
            than ``socket_timeout_s`` so that a burst on a busy replica, which opens many
            connections at once, is not mistaken for an outage.
        max_connections: connections to Redis held by this process at most.
        clock: monotonic seconds (tests pass a fake).
        key_prefix: prepended to every key in Redis, to share one server between
            installations (or test runs).

    Raises:
        MissingDependencyError: the ``redis`` package is not installed.
    """

    def __init__(self, url: str, *, socket_timeout_s: float = 0.05,
                 retry_after_s: float = 5.0, connect_timeout_s: float = 0.25,
                 max_connections: int = 64, clock: Clock = time.monotonic,
                 key_prefix: str = "") -> None:
        redis_asyncio, retry_cls, no_backoff = _redis_modules()
        self.url = url
        self.retry_after_s = retry_after_s
        self.key_prefix = key_prefix
        self._where = _redact(url)
        self._clock = clock
        # A bounded pool that waits briefly for a free connection, so a burst queues for
        # a moment instead of opening thousands of sockets. One attempt per call:
        # retrying inside a request only adds latency; the circuit decides when to retry.
        pool = redis_asyncio.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=connect_timeout_s,
            socket_timeout=socket_timeout_s, socket_connect_timeout=connect_timeout_s,
            retry=retry_cls(no_backoff(), 0),
        )
        self._client: Any = redis_asyncio.Redis.from_pool(pool)
        self._open_until: float | None = None  # circuit open (Redis left alone) until then
        self._hits = 0
        self._misses = 0
        self._errors = 0

    @property
    def available(self) -> bool:
        """False while the circuit is open after a failure."""
        return self._open_until is None

    async def get(self, key: str) -> bytes | None:
        probe = self._admit()
        if probe is None:
            self._misses += 1
            return None
        try:
            value = await self._client.get(self.key_prefix + key)
        except Exception as exc:  # noqa: BLE001 - no Redis failure may reach the caller
            self._failed(exc)
            self._misses += 1
            return None
        self._succeeded(probe)
        if value is None:
            self._misses += 1
            return None
        self._hits += 1
        return value if isinstance(value, bytes) else bytes(value)

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        if ttl_s is not None and ttl_s <= 0:
            return
        probe = self._admit()
        if probe is None:
            return
        px = None if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
        try:
            await self._client.set(self.key_prefix + key, value, px=px)
        except Exception as exc:  # noqa: BLE001 - no Redis failure may reach the caller
            self._failed(exc)
            return
        self._succeeded(probe)

    async def drop_version(self, artifact_digest: str) -> None:
        """``SCAN MATCH`` the version's keys and ``UNLINK`` them in batches.

        Best effort: entries left behind by a failure are still correct (a digest
        always names the same artifact) and leave with their time to live.
        """
        probe = self._admit()
        if probe is None:
            return
        pattern = (self.key_prefix + version_prefix(artifact_digest)).translate(
            _GLOB_SPECIALS) + "*"
        try:
            batch: list[bytes] = []
            async for key in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
                batch.append(key)
                if len(batch) >= _UNLINK_BATCH:
                    await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                await self._client.unlink(*batch)
        except Exception as exc:  # noqa: BLE001 - no Redis failure may reach the caller
            self._failed(exc)
            return
        self._succeeded(probe)

    @property
    def stats(self) -> CacheStats:
        return CacheStats(hits=self._hits, misses=self._misses, errors=self._errors)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception as exc:  # noqa: BLE001 - closing a broken connection may fail too
            logger.debug("closing the Redis cache at %s failed: %r", self._where, exc)

    # The circuit. Closed: every call goes to Redis. Open: calls skip Redis until
    # ``_open_until``; then one call probes while the others keep skipping.

    def _admit(self) -> bool | None:
        """None: skip Redis. Otherwise whether this call is the probe of an open circuit."""
        if self._open_until is None:
            return False
        now = self._clock()
        if now < self._open_until:
            return None
        self._open_until = now + self.retry_after_s
        return True

    def _failed(self, exc: Exception) -> None:
        self._errors += 1
        was_closed = self._open_until is None
        self._open_until = self._clock() + self.retry_after_s
        if was_closed:
            logger.warning(
                "Redis cache at %s is unavailable (%s: %s); predicting without the cache "
                "and trying again every %g s", self._where, type(exc).__name__, exc,
                self.retry_after_s,
            )
        else:
            logger.debug("Redis cache at %s still unavailable: %r", self._where, exc)

    def _succeeded(self, probe: bool) -> None:
        # Only a probe closes the circuit: a call that started before the failure and
        # happened to succeed says little, and would make the log flap.
        if probe and self._open_until is not None:
            self._open_until = None
            logger.info("Redis cache at %s is available again", self._where)


def _redis_modules() -> tuple[Any, Any, Any]:
    try:
        import redis.asyncio as redis_asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:
        raise MissingDependencyError("the Redis cache", "redis") from exc
    return redis_asyncio, Retry, NoBackoff


def _redact(url: str) -> str:
    """The URL without its user name and password, for logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=host + port).geturl()


# --- choosing one ---------------------------------------------------------------------


def open_cache(redis_url: str | None, **options: Any) -> PredictionCache:
    """A :class:`RedisCache` when a URL is given, else an :class:`LRUCache`.

    ``options`` go to the chosen class (``max_entries``/``max_bytes`` for the LRU,
    ``socket_timeout_s``/``retry_after_s``/``connect_timeout_s``/``max_connections``/
    ``key_prefix`` for Redis; ``clock`` for both).

    Raises:
        MissingDependencyError: a Redis URL without the ``redis`` package.
    """
    if redis_url:
        return RedisCache(redis_url, **options)
    return LRUCache(**options)

