"""Token-bucket rate limits per API key: in-process, or shared by replicas through Redis.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second; each
request takes one. When it is empty the request is refused with the seconds until a
token is back (the ``Retry-After``).

With Redis, one Lua script reads and updates the bucket atomically, using the Redis
server's clock, so every replica sees the same bucket. If Redis cannot be reached the
limiter falls back to in-process buckets (each replica then enforces the limit on its
own) and logs it once; it never fails a request because Redis is down.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import Any

log = logging.getLogger(__name__)

_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class LocalBuckets:
    """In-process buckets (bounded: the least recently used are forgotten)."""

    def __init__(self, *, max_keys: int = 100_000,
                 clock: Any = time.monotonic) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max = max_keys
        self._clock = clock

    def take(self, key: str, rate: float, burst: float) -> float:
        """0.0 when allowed, else the seconds until a token is back."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - at) * rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait


class RateLimiter:
    """``await limiter.check(key, rate)`` -> seconds to wait (0.0: go ahead).

    Args:
        redis_url: share buckets through this Redis; None keeps them in-process.
        burst_s: the bucket holds ``rate * burst_s`` tokens (at least 1), so a client may
            send that many requests at once after a quiet period.
    """

    def __init__(self, redis_url: str | None = None, *, burst_s: float = 1.0,
                 prefix: str = "modelhost:ratelimit:") -> None:
        self._local = LocalBuckets()
        self._burst_s = burst_s
        self._prefix = prefix
        self._redis: Any = None
        self._script: Any = None
        self._warned = False
        if redis_url:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.Redis.from_url(redis_url, socket_timeout=0.5,
                                                       socket_connect_timeout=0.5)
            self._script = self._redis.register_script(_LUA)

    def burst(self, rate: float) -> float:
        return max(1.0, rate * self._burst_s)

    async def check(self, key: str, rate: float) -> float:
        burst = self.burst(rate)
        if self._script is not None:
            try:
                wait = float(await self._script(keys=[self._prefix + key], args=[rate, burst]))
            except Exception as exc:  # noqa: BLE001  # Redis down: limit per replica
                if not self._warned:
                    log.warning("rate limits fall back to per-process buckets: Redis is "
                                "unavailable (%s)", type(exc).__name__)
                    self._warned = True
            else:
                self._warned = False
                return wait if math.isfinite(wait) else 1.0
        return self._local.take(key, rate, burst)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
