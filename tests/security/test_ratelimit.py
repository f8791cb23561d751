"""Token buckets per key: in-process, and shared by replicas through a real Redis."""

from __future__ import annotations

import uuid

import pytest

from modelhost.security.ratelimit import LocalBuckets, RateLimiter
from tests.services import require_redis


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_local_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    buckets = LocalBuckets(clock=clock)
    assert [buckets.take("k", 2.0, 3.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("k", 2.0, 3.0)
    assert wait == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("k", 2.0, 3.0) == 0.0
    assert buckets.take("other", 2.0, 3.0) == 0.0  # every key has its own bucket


def test_local_buckets_forget_the_least_recently_used() -> None:
    buckets = LocalBuckets(max_keys=2, clock=FakeClock())
    for key in ("a", "b", "c"):
        buckets.take(key, 1.0, 1.0)
    assert buckets.take("a", 1.0, 1.0) == 0.0  # "a" was forgotten: a full bucket again
    assert buckets.take("c", 1.0, 1.0) > 0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_replicas_share_one_bucket_through_redis() -> None:
    url = require_redis()
    key = f"test-{uuid.uuid4().hex}"
    first, second = RateLimiter(url), RateLimiter(url)  # two replicas
    try:
        results = [await first.check(key, 1.0), await second.check(key, 1.0)]
        assert results[0] == 0.0
        assert 0 < results[1] <= 1.0  # the second replica saw the first one's request
    finally:
        await first.close()
        await second.close()


@pytest.mark.anyio
async def test_redis_down_falls_back_to_local_buckets(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimiter("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        assert await limiter.check("k", 1.0) == 0.0
        assert await limiter.check("k", 1.0) > 0  # still limited, per process
    finally:
        await limiter.close()
    assert "fall back to per-process buckets" in caplog.text
