"""The prediction cache: keys, the in-process LRU, and Redis (real server, real outages)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis
from tests.services import require_redis

from modelhost.serving.cache import (
    CacheStats,
    LRUCache,
    PredictionCache,
    RedisCache,
    cache_key,
    open_cache,
    version_prefix,
)

DIGEST_A = hashlib.sha256(b"model-a").hexdigest()
DIGEST_B = hashlib.sha256(b"model-b").hexdigest()
LOGGER = "modelhost.serving.cache"

Factory = Callable[[], PredictionCache]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(factory: Factory, body: Callable[[PredictionCache], Awaitable[None]]) -> None:
    """Run ``body`` on a fresh cache inside its own event loop, then close the cache."""

    async def scenario() -> None:
        cache = factory()
        try:
            await body(cache)
        finally:
            await cache.close()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def redis_url() -> str:
    return require_redis()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"mhtest:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


def _redis(url: str, prefix: str, **options: Any) -> RedisCache:
    """A Redis cache with timeouts for a loaded CI machine: these tests are not about them."""
    return RedisCache(url, key_prefix=prefix, **{"socket_timeout_s": 1.0,
                                                 "connect_timeout_s": 2.0, **options})


def _count(redis_url: str, pattern: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


@pytest.fixture(params=["lru", "redis"])
def make_cache(request: pytest.FixtureRequest) -> Factory:
    """Caches of each backend, for the behaviour they share."""
    if request.param == "lru":
        return LRUCache
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    return lambda: _redis(url, prefix)


# --- keys -------------------------------------------------------------------------------


def test_key_is_namespaced_by_version_and_stable() -> None:
    key = cache_key(DIGEST_A, [{"x": 1.5, "y": "a"}], {"threshold": 0.3})
    assert re.fullmatch(r"mh:pred:[0-9a-f]{16}:[0-9a-f]{64}", key)
    assert key.startswith(version_prefix(DIGEST_A))
    assert version_prefix(DIGEST_A) == f"mh:pred:{DIGEST_A[:16]}:"
    assert cache_key(DIGEST_A, [{"x": 1.5, "y": "a"}], {"threshold": 0.3}) == key


def test_key_golden_value() -> None:
    """Replicas in other processes (other hash seeds) and later releases must compute the
    very same key, or a shared cache never hits."""
    key = cache_key(DIGEST_A, {"x": [1, 2.5, None], "s": ["a"]}, {"k": True})
    assert key == ("mh:pred:73f95cf180a19624:"
                   "247a445bf2a161264b336000d7b28928a5a3886f3efd3c63d660ba1f3dc604de")


def test_key_ignores_order_of_mapping_keys_and_container_types() -> None:
    base = cache_key(DIGEST_A, [{"x": 1.5, "y": "a"}], {"p": 1, "q": 2})
    assert cache_key(DIGEST_A, [{"y": "a", "x": 1.5}], {"q": 2, "p": 1}) == base
    assert cache_key(DIGEST_A, ({"x": 1.5, "y": "a"},), {"p": 1, "q": 2}) == base
    assert cache_key(DIGEST_A, [1, 2], None) == cache_key(DIGEST_A, [1, 2], {})


def test_key_serialises_numpy_like_the_same_values() -> None:
    matrix = [[1.0, 2.0], [3.0, 4.0]]
    expected = cache_key(DIGEST_A, {"X": matrix}, None)
    array = np.array(matrix, dtype=np.float64)
    assert cache_key(DIGEST_A, {"X": array}, None) == expected
    assert cache_key(DIGEST_A, {"X": np.asfortranarray(array)}, None) == expected
    assert cache_key(DIGEST_A, {"X": array.T.T}, None) == expected
    assert cache_key(DIGEST_A, {"X": [[np.float64(1.0), 2.0], [3.0, np.float32(4.0)]]},
                     None) == expected
    assert cache_key(DIGEST_A, {"n": np.int64(3)}, None) == cache_key(DIGEST_A, {"n": 3}, None)
    assert cache_key(DIGEST_A, np.array(["a", "b"], dtype=object), None) == cache_key(
        DIGEST_A, ["a", "b"], None)


@pytest.mark.parametrize(("payload", "params", "other_payload", "other_params"), [
    ([{"x": 1.0}], None, [{"x": 1.5}], None),                    # a value
    ([{"x": 1.0}], None, [{"z": 1.0}], None),                    # a column name
    ([{"x": 1.0}], {"t": 0.5}, [{"x": 1.0}], {"t": 0.6}),        # a param
    ([{"x": 1.0}], None, [{"x": 1.0}], {"t": 0.5}),              # a param added
    ([1], None, [1.0], None),                                    # int and float
    ([1], None, [True], None),                                   # int and bool
    ([1], None, ["1"], None),                                    # number and string
    ([float("nan")], None, [None], None),                        # NaN and null
    ([float("inf")], None, [float("-inf")], None),               # both infinities
    ([float("inf")], None, [float("nan")], None),                # infinity and NaN
    (np.array([1.0, np.nan]), None, np.array([1.0, np.inf]), None),
    ([0.0], None, [-0.0], None),                                 # the sign of zero
    ([[1, 2], [3]], None, [[1], [2, 3]], None),                  # the nesting
    ([b"ab"], None, [b"ac"], None),                              # bytes
    ([{"x": 1.0}, {"x": 2.0}], None, [{"x": 2.0}, {"x": 1.0}], None),  # row order
])
def test_key_changes_with_any_input_change(payload: object, params: dict[str, object] | None,
                                           other_payload: object,
                                           other_params: dict[str, object] | None) -> None:
    assert cache_key(DIGEST_A, payload, params) != cache_key(DIGEST_A, other_payload,
                                                              other_params)


def test_key_never_crosses_versions() -> None:
    payload = [{"x": 1.0}]
    a, b = cache_key(DIGEST_A, payload, None), cache_key(DIGEST_B, payload, None)
    assert a != b
    assert a.startswith(version_prefix(DIGEST_A)) and b.startswith(version_prefix(DIGEST_B))
    # Digests sharing their first 16 characters still hash apart: the full digest is hashed.
    twin = DIGEST_A[:16] + "0" * 48
    assert cache_key(twin, payload, None) != a


def test_key_refuses_values_without_a_json_form() -> None:
    with pytest.raises(TypeError, match="object"):
        cache_key(DIGEST_A, [object()], None)


# --- behaviour shared by every backend ---------------------------------------------------


def test_round_trip_and_counters(make_cache: Factory) -> None:
    async def body(cache: PredictionCache) -> None:
        key = cache_key(DIGEST_A, [{"x": 1.0}], None)
        assert await cache.get(key) is None
        await cache.set(key, b'{"predictions": [1]}')
        assert await cache.get(key) == b'{"predictions": [1]}'
        await cache.set(key, b"\x00\xff binary")
        assert await cache.get(key) == b"\x00\xff binary"
        stats = cache.stats
        assert (stats.hits, stats.misses, stats.errors) == (2, 1, 0)
        assert stats.hit_ratio == pytest.approx(2 / 3)

    run(make_cache, body)


def test_drop_version_drops_only_that_version(make_cache: Factory) -> None:
    async def body(cache: PredictionCache) -> None:
        keys_a = [cache_key(DIGEST_A, [i], None) for i in range(20)]
        keys_b = [cache_key(DIGEST_B, [i], None) for i in range(20)]
        for key in keys_a + keys_b:
            await cache.set(key, key.encode())
        await cache.drop_version(DIGEST_A)
        assert [await cache.get(k) for k in keys_a] == [None] * 20
        assert [await cache.get(k) for k in keys_b] == [k.encode() for k in keys_b]
        await cache.drop_version(DIGEST_A)  # nothing left to drop: still fine

    run(make_cache, body)


def test_non_positive_ttl_stores_nothing(make_cache: Factory) -> None:
    async def body(cache: PredictionCache) -> None:
        await cache.set("k", b"v", ttl_s=0)
        await cache.set("k2", b"v", ttl_s=-1)
        assert await cache.get("k") is None and await cache.get("k2") is None
        assert cache.stats.errors == 0

    run(make_cache, body)


def test_concurrent_tasks(make_cache: Factory) -> None:
    keys = [cache_key(DIGEST_A, [i], None) for i in range(30)]
    gets = 0

    async def worker(cache: PredictionCache, seed: int) -> None:
        nonlocal gets
        for step in range(40):
            key = keys[(seed * 7 + step) % len(keys)]
            value = await cache.get(key)
            gets += 1
            if value is None:
                await cache.set(key, key.encode())
            else:
                assert value == key.encode()  # never another key's value
            await asyncio.sleep(0)

    async def body(cache: PredictionCache) -> None:
        await asyncio.gather(*(worker(cache, seed) for seed in range(12)))
        stats = cache.stats
        assert stats.hits + stats.misses == gets == 12 * 40
        assert stats.hits > 0 and stats.errors == 0
        assert [await cache.get(k) for k in keys] == [k.encode() for k in keys]

    run(make_cache, body)


def test_open_cache_chooses_the_backend(redis_url: str) -> None:
    assert isinstance(open_cache(None), LRUCache)
    assert isinstance(open_cache("", max_entries=5), LRUCache)
    cache = open_cache(redis_url, retry_after_s=1.0)
    assert isinstance(cache, RedisCache)
    assert cache.retry_after_s == 1.0
    asyncio.run(cache.close())


# --- in-process LRU ----------------------------------------------------------------------


def test_lru_evicts_least_recently_used_by_count() -> None:
    async def body(cache: PredictionCache) -> None:
        for key in "abc":
            await cache.set(key, key.encode())
        assert await cache.get("a") == b"a"  # now b is the least recently used
        await cache.set("d", b"d")
        assert await cache.get("b") is None
        assert [await cache.get(k) for k in "acd"] == [b"a", b"c", b"d"]
        assert cache.stats.size == 3

    run(lambda: LRUCache(max_entries=3), body)


def test_lru_evicts_by_bytes() -> None:
    cache = LRUCache(max_entries=100, max_bytes=100)

    async def body(_: PredictionCache) -> None:
        await cache.set("k1", b"x" * 40)  # each entry costs 42 bytes (value + key)
        await cache.set("k2", b"x" * 40)
        assert cache.nbytes == 84
        await cache.set("k3", b"x" * 40)  # 126 > 100: k1 leaves
        assert await cache.get("k1") is None
        assert cache.nbytes == 84 and cache.stats.size == 2
        await cache.set("k2", b"y" * 10)  # overwriting re-counts the entry
        assert cache.nbytes == 42 + 12
        await cache.set("big", b"z" * 200)  # larger than the whole cache: not stored
        assert await cache.get("big") is None
        await cache.set("k3", b"z" * 200)  # and it does not leave the old value behind
        assert await cache.get("k3") is None
        assert await cache.get("k2") == b"y" * 10
        assert cache.nbytes == 12 and cache.stats.size == 1

    run(lambda: cache, body)


def test_lru_honours_ttl_with_the_given_clock() -> None:
    clock = FakeClock()
    cache = LRUCache(clock=clock)

    async def body(_: PredictionCache) -> None:
        await cache.set("short", b"1", ttl_s=10)
        await cache.set("forever", b"2")
        clock.advance(9.9)
        assert await cache.get("short") == b"1"
        clock.advance(0.2)
        assert await cache.get("short") is None
        assert cache.stats.size == 1  # the expired entry is gone, not just hidden
        clock.advance(1e9)
        assert await cache.get("forever") == b"2"
        await cache.set("short", b"3", ttl_s=5)  # a new value gets a new deadline
        clock.advance(4)
        assert await cache.get("short") == b"3"

    run(lambda: cache, body)


def test_lru_is_safe_across_threads() -> None:
    cache = LRUCache(max_entries=50, max_bytes=5000)
    keys = [cache_key(DIGEST_A, [i], None) for i in range(200)]

    def hammer(seed: int) -> int:
        for step in range(500):
            key = keys[(seed * 31 + step * 7) % len(keys)]
            value = cache.get_nowait(key)
            # Other threads write the same key with other lengths: any value seen must
            # be one that some thread wrote for this key, never a torn or foreign one.
            assert value is None or (key.encode().startswith(value) and len(value) >= 10)
            cache.set_nowait(key, key.encode()[: 10 + step % 50])
        return 500

    with ThreadPoolExecutor(max_workers=8) as pool:
        total = sum(pool.map(hammer, range(8)))
    stats = cache.stats
    assert stats.hits + stats.misses == total
    assert stats.size is not None and stats.size <= 50 and cache.nbytes <= 5000
    asyncio.run(cache.drop_version(DIGEST_A))
    assert cache.stats.size == 0 and cache.nbytes == 0  # the byte count never drifted


def test_lru_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        LRUCache(max_entries=0)


# --- Redis -------------------------------------------------------------------------------


def test_redis_ttl_expires(redis_url: str, redis_prefix: str) -> None:
    async def body(cache: PredictionCache) -> None:
        await cache.set("short", b"1", ttl_s=0.05)
        await cache.set("long", b"2", ttl_s=60)
        await cache.set("forever", b"3")
        client = redis.Redis.from_url(redis_url)
        try:
            assert 0 < client.pttl(redis_prefix + "short") <= 50
            assert 59_000 < client.pttl(redis_prefix + "long") <= 60_000
            assert client.pttl(redis_prefix + "forever") == -1
        finally:
            client.close()
        assert await cache.get("short") == b"1"
        await asyncio.sleep(0.12)
        assert await cache.get("short") is None
        assert await cache.get("long") == b"2"

    run(lambda: _redis(redis_url, redis_prefix), body)


def test_redis_drop_version_scans_in_batches(redis_url: str, redis_prefix: str) -> None:
    async def body(cache: PredictionCache) -> None:
        await asyncio.gather(*(cache.set(cache_key(DIGEST_A, [i], None), b"a")
                               for i in range(1_200)))
        await asyncio.gather(*(cache.set(cache_key(DIGEST_B, [i], None), b"b")
                               for i in range(30)))
        await cache.set("unrelated", b"u")
        await cache.drop_version(DIGEST_A)
        assert cache.stats.errors == 0

    run(lambda: _redis(redis_url, redis_prefix), body)
    assert _count(redis_url, redis_prefix + version_prefix(DIGEST_A) + "*") == 0
    assert _count(redis_url, redis_prefix + version_prefix(DIGEST_B) + "*") == 30
    assert _count(redis_url, redis_prefix + "unrelated") == 1


def test_redis_is_shared_by_replicas(redis_url: str, redis_prefix: str) -> None:
    async def scenario() -> None:
        first = _redis(redis_url, redis_prefix)
        second = _redis(redis_url, redis_prefix)
        try:
            key = cache_key(DIGEST_A, [{"x": 1.0}], {"t": 1})
            await first.set(key, b"computed once")
            assert await second.get(key) == b"computed once"
            await second.drop_version(DIGEST_A)
            assert await first.get(key) is None
            assert (first.stats.hits, first.stats.misses) == (0, 1)
            assert (second.stats.hits, second.stats.misses) == (1, 0)
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_redis_down_degrades_to_no_cache(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cache = RedisCache("redis://modelhost:s3cret@127.0.0.1:1/0", retry_after_s=5.0,
                       clock=clock)

    async def body(_: PredictionCache) -> None:
        assert await cache.get("k") is None  # refused: one error, the circuit opens
        assert cache.stats == CacheStats(hits=0, misses=1, errors=1)
        assert not cache.available
        started = time.perf_counter()
        for _ in range(100):  # within retry_after_s: Redis is not contacted at all
            assert await cache.get("k") is None
            await cache.set("k", b"v", ttl_s=1)
            await cache.drop_version(DIGEST_A)
        assert time.perf_counter() - started < 0.05
        assert cache.stats == CacheStats(hits=0, misses=101, errors=1)
        clock.advance(5.0)  # then it tries again, once
        await cache.set("k", b"v")
        assert cache.stats.errors == 2
        await cache.set("k", b"v")
        assert cache.stats.errors == 2

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(lambda: cache, body)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one per outage, not one per request
    assert "127.0.0.1:1" in warnings[0].getMessage()
    assert "s3cret" not in caplog.text


class _Proxy:
    """A TCP proxy in front of the real Redis that can stop answering, like a stuck server."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.hang = False
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Drop every open connection."""
        for writer in list(self._writers):
            writer.close()

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()
        await asyncio.sleep(0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.hang:
                await reader.read()  # read, never answer, until the client gives up
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except OSError:
            return
        finally:
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            self._writers.discard(writer)


def test_redis_timeout_opens_the_circuit_and_recovery_closes_it(
        redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        parts = urlsplit(redis_url)
        proxy = _Proxy(parts.hostname or "127.0.0.1", parts.port or 6379)
        await proxy.start()
        cache = RedisCache(f"redis://127.0.0.1:{proxy.port}/0", socket_timeout_s=0.3,
                           connect_timeout_s=1.0, retry_after_s=5.0, clock=clock,
                           key_prefix=redis_prefix)
        try:
            await cache.set("k", b"v")
            assert await cache.get("k") == b"v"

            proxy.hang = True  # Redis stops answering
            proxy.cut()
            started = time.perf_counter()
            assert await cache.get("k") is None
            assert time.perf_counter() - started < 2.0  # bounded by the socket timeout
            assert cache.stats.errors == 1 and not cache.available
            assert await cache.get("k") is None  # circuit open: not even tried
            assert cache.stats.errors == 1

            clock.advance(5.0)  # the probe still meets a stuck server
            assert await cache.get("k") is None
            assert cache.stats.errors == 2

            proxy.hang = False  # Redis is back
            proxy.cut()
            assert await cache.get("k") is None  # still within retry_after_s
            clock.advance(5.0)
            assert await cache.get("k") == b"v"
            assert cache.available
            assert cache.stats == CacheStats(hits=2, misses=4, errors=2)
        finally:
            await cache.close()
            await proxy.aclose()

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        asyncio.run(scenario())
    levels = [r.levelno for r in caplog.records]
    assert levels.count(logging.WARNING) == 1
    assert any("available again" in r.getMessage() for r in caplog.records
               if r.levelno == logging.INFO)
