"""The online store in Redis, shared by every replica.

Each (view, entity key) is one string, ``EVENT_TS VALUES_JSON``, so a lookup of any number
of keys across views is one ``MGET``. Writes go through a small Lua script that keeps the
newer value (Redis runs a script atomically), a few thousand keys per call. Freshness
records are the fields of one hash.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

from modelhost.errors import MissingDependencyError, StoreUnavailableError
from modelhost.features.online import Freshness, OnlineStore, Stored

PREFIX = "modelhost:features:"
_WRITE = """
for i, key in ipairs(KEYS) do
  local ts = ARGV[2 * i - 1]
  local current = redis.call('GET', key)
  if not current or tonumber(string.match(current, '^%S+')) <= tonumber(ts) then
    redis.call('SET', key, ts .. ' ' .. ARGV[2 * i])
  end
end
return #KEYS
"""
_CHUNK = 2000


class RedisOnlineStore(OnlineStore):
    def __init__(self, url: str, *, prefix: str = PREFIX) -> None:
        try:
            import redis
            import redis.asyncio
        except ImportError:
            raise MissingDependencyError("the Redis online store", "redis") from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        parts = urllib.parse.urlsplit(url)
        self.where = f"the Redis online store at {parts.hostname or 'localhost'}"
        self._prefix = prefix
        self._url = url
        self._sync: Any = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._async: Any = None  # opened in the event loop that reads
        self._script: Any = None

    def _key(self, view: str, entity: str) -> str:
        return f"{self._prefix}{view}:{entity}"

    def write(self, view: str, rows: Sequence[tuple[str, float, str | bytes]]) -> None:
        try:
            if self._script is None:
                self._script = self._sync.register_script(_WRITE)
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start:start + _CHUNK]
                args: list[Any] = []
                for _, ts, values in chunk:
                    args += [repr(float(ts)), values]
                self._script(keys=[self._key(view, k) for k, _, _ in chunk], args=args)
        except self._errors as exc:
            raise StoreUnavailableError(self.where, type(exc).__name__) from None

    def read(self, lookups: Sequence[tuple[str, str]]) -> list[Stored | None]:
        if not lookups:
            return []
        try:
            answers = self._sync.mget([self._key(v, k) for v, k in lookups])
        except self._errors as exc:
            raise StoreUnavailableError(self.where, type(exc).__name__) from None
        return [_parse(a) for a in answers]

    async def aread(self, lookups: Sequence[tuple[str, str]]) -> list[Stored | None]:
        if not lookups:
            return []
        if self._async is None:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(
                self._url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            answers = await self._async.mget([self._key(v, k) for v, k in lookups])
        except self._errors as exc:
            raise StoreUnavailableError(self.where, type(exc).__name__) from None
        return [_parse(a) for a in answers]

    def record(self, freshness: Freshness) -> None:
        import orjson

        try:
            self._sync.hset(f"{self._prefix}freshness", freshness.view,
                            orjson.dumps(freshness.to_dict()))
        except self._errors as exc:
            raise StoreUnavailableError(self.where, type(exc).__name__) from None

    def freshness(self) -> dict[str, Freshness]:
        try:
            records = self._sync.hgetall(f"{self._prefix}freshness")
        except self._errors as exc:
            raise StoreUnavailableError(self.where, type(exc).__name__) from None
        return {view.decode(): Freshness.from_json(record)
                for view, record in records.items()}

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        self.close()


def _parse(answer: bytes | None) -> Stored | None:
    if answer is None:
        return None
    ts, _, values = answer.partition(b" ")
    return float(ts), values
