"""AdaptiveBatcher: real numpy work in a real worker thread; only the clock is faked."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelhost.errors import (
    DeadlineExceededError,
    OverloadedError,
    PayloadTooLargeError,
    PredictionFailedError,
)
from modelhost.serving.batcher import AdaptiveBatcher

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def rows(start: int, n: int) -> np.ndarray:
    """n one-column rows with values unique to a request, so batches can be traced."""
    return np.arange(start, start + n, dtype=np.float64).reshape(-1, 1)


class Model:
    """A real run_batch (doubles column 0, second output tripled) that records its calls.

    With ``delay`` it sleeps per call; with ``gated`` every call blocks until ``release``.
    """

    def __init__(self, *, delay: float = 0.0, gated: bool = False) -> None:
        self.delay = delay
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.calls: list[tuple[np.ndarray, dict[str, Any]]] = []

    def __call__(self, X: np.ndarray, params: Mapping[str, Any]) -> tuple[Any, ...]:
        self.calls.append((np.array(X, copy=True), dict(params)))
        if self.delay:
            time.sleep(self.delay)
        assert self.gate.wait(5)
        return X[:, 0] * 2.0, X[:, 0] * 3.0

    def release(self) -> None:
        self.gate.set()

    @property
    def sizes(self) -> list[int]:
        return [len(x) for x, _ in self.calls]

    def saw(self, value: float) -> bool:
        return any((x[:, 0] == value).any() for x, _ in self.calls)


def check(result: tuple[np.ndarray | None, ...], inputs: np.ndarray) -> None:
    doubled, tripled = result
    assert doubled is not None and tripled is not None
    np.testing.assert_array_equal(doubled, inputs[:, 0] * 2.0)
    np.testing.assert_array_equal(tripled, inputs[:, 0] * 3.0)


# --- correctness -----------------------------------------------------------------------


def test_batched_results_equal_unbatched_predictions() -> None:
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    rng = np.random.default_rng(7)
    parts = [X[rng.integers(0, len(X), size=int(n))] for n in rng.integers(1, 25, size=40)]
    sizes: list[int] = []

    def run_batch(inputs: np.ndarray, params: Mapping[str, Any]) -> tuple[Any, ...]:
        sizes.append(len(inputs))
        return clf.predict(inputs), clf.predict_proba(inputs)

    async def main() -> list[tuple[np.ndarray | None, ...]]:
        batcher = AdaptiveBatcher(run_batch, combine=np.concatenate, max_batch_size=32)
        results = await asyncio.gather(*(batcher.submit(p, rows=len(p)) for p in parts))
        await batcher.close()
        return results

    results = run(main())
    for part, (labels, proba) in zip(parts, results, strict=True):
        np.testing.assert_array_equal(labels, clf.predict(part))
        np.testing.assert_allclose(proba, clf.predict_proba(part), rtol=0, atol=1e-12)
    assert len(sizes) < len(parts)
    assert max(sizes) <= 32 and sum(sizes) == sum(len(p) for p in parts)


def test_slow_model_coalesces_concurrent_requests_and_reports_batches() -> None:
    model = Model(delay=0.02)
    reported: list[tuple[int, int, float]] = []

    async def main() -> AdaptiveBatcher:
        batcher = AdaptiveBatcher(model, combine=np.concatenate,
                                  on_batch=lambda r, n, s: reported.append((r, n, s)))
        tasks = []
        for i in range(20):
            tasks.append(asyncio.ensure_future(batcher.submit(rows(i * 10, 1), rows=1)))
            await asyncio.sleep(0.002)
        for i, result in enumerate(await asyncio.gather(*tasks)):
            check(result, rows(i * 10, 1))
        await batcher.close()
        return batcher

    batcher = run(main())
    assert len(model.calls) < 20
    assert max(model.sizes) > 1
    stats = batcher.stats
    assert stats.batches == len(model.calls) == len(reported)
    assert stats.requests == stats.rows == 20 and stats.failed_batches == 0
    assert [r for r, _, _ in reported] == model.sizes
    assert stats.last_batch_rows == model.sizes[-1] and stats.mean_batch_rows > 1
    assert all(seconds >= 0.019 for _, _, seconds in reported)


def test_single_idle_request_does_not_pay_the_wait() -> None:
    model = Model()

    async def main() -> list[float]:
        batcher = AdaptiveBatcher(model, combine=np.concatenate, max_wait_ms=200)
        latencies = []
        for i in range(5):  # a sequential client never overlaps itself: no waiting
            started = time.perf_counter()
            check(await batcher.submit(rows(i, 3), rows=3), rows(i, 3))
            latencies.append(time.perf_counter() - started)
        await batcher.close()
        return latencies

    assert max(run(main())) < 0.1
    assert model.sizes == [3] * 5


def test_a_few_closed_loop_clients_do_not_pay_the_wait_every_batch() -> None:
    model = Model(delay=0.002)

    async def client(batcher: AdaptiveBatcher, base: int) -> None:
        for i in range(10):  # each waits for its answer before asking again
            check(await batcher.submit(rows(base + i, 1), rows=1), rows(base + i, 1))

    async def main() -> float:
        batcher = AdaptiveBatcher(model, combine=np.concatenate, max_batch_size=64,
                                  max_wait_ms=200)
        started = time.perf_counter()
        await asyncio.gather(*(client(batcher, 100 * c) for c in range(4)))
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    # Four clients can never fill a batch of 64: waiting 200 ms per batch would take
    # seconds; the batch stops filling once arrivals pause.
    assert run(main()) < 1.0
    assert max(model.sizes) <= 4


def test_under_load_the_consumer_waits_for_the_batch_to_fill() -> None:
    now = [0.0]
    model = Model()

    async def timed(batcher: AdaptiveBatcher, inputs: np.ndarray) -> float:
        started = time.perf_counter()
        check(await batcher.submit(inputs, rows=len(inputs)), inputs)
        return time.perf_counter() - started

    async def main() -> tuple[list[float], float, float, float]:
        batcher = AdaptiveBatcher(model, combine=np.concatenate, max_batch_size=8,
                                  max_wait_ms=100, clock=lambda: now[0])
        # a burst of concurrent arrivals: high load, but a full batch goes at once
        burst = await asyncio.gather(*(timed(batcher, rows(i, 1)) for i in range(8)))
        first = asyncio.ensure_future(timed(batcher, rows(100, 1)))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(timed(batcher, rows(200, 1)))
        waited, joined = await asyncio.gather(first, second)
        now[0] = 10.0  # a long pause: load is low again
        alone = await timed(batcher, rows(300, 1))
        await batcher.close()
        return burst, waited, joined, alone

    burst, waited, joined, alone = run(main())
    assert model.sizes == [8, 2, 1]
    assert max(burst) < 0.05
    assert waited >= 0.08 and joined < waited  # the first waited for the second to join
    assert alone < 0.05


def test_requests_with_different_params_never_share_a_batch() -> None:
    model = Model(delay=0.03)

    def part(value: int, n: int) -> np.ndarray:
        return np.full((n, 1), float(value))

    def check_params(X: np.ndarray, params: Mapping[str, Any]) -> tuple[Any, ...]:
        assert (X[:, 0] == params["t"]).all()  # a mixed batch would fail the call
        return model(X, params)

    async def main() -> None:
        batcher = AdaptiveBatcher(check_params, combine=np.concatenate)
        blocker = asyncio.ensure_future(batcher.submit(part(0, 1), rows=1, params={"t": 0}))
        await until(lambda: batcher.in_flight)
        order = [({"t": 1}, 1), ({"t": 2}, 2), ({"t": 1}, 3), ({"t": 2}, 1), ({"t": 1}, 2),
                 ({"t": 3, "u": 0}, 1), ({"u": 0, "t": 3}, 2)]
        tasks = [batcher.submit(part(p["t"], n), rows=n, params=p) for p, n in order]
        results = await asyncio.gather(blocker, *tasks)
        for (p, n), result in zip([({"t": 0}, 1), *order], results, strict=True):
            check(result, part(p["t"], n))
        await batcher.close()

    run(main())
    # groups in the order of their oldest request; equal params in any key order merge
    assert [p for _, p in model.calls] == [{"t": 0}, {"t": 1}, {"t": 2}, {"t": 3, "u": 0}]
    assert model.sizes == [1, 6, 3, 3]


def test_oversized_request_runs_alone_and_smaller_ones_fill_around_it() -> None:
    model = Model(gated=True)

    async def main() -> None:
        batcher = AdaptiveBatcher(model, combine=np.concatenate, max_batch_size=4)
        blocker = asyncio.ensure_future(batcher.submit(rows(0, 1), rows=1))
        await until(lambda: batcher.in_flight)
        parts = [rows(100, 2), rows(200, 10), rows(300, 2)]
        tasks = [asyncio.ensure_future(batcher.submit(p, rows=len(p))) for p in parts]
        await until(lambda: batcher.queued_rows == 14)
        model.release()
        check(await blocker, rows(0, 1))
        for p, result in zip(parts, await asyncio.gather(*tasks), strict=True):
            check(result, p)
        await batcher.close()

    run(main())
    assert model.sizes == [1, 4, 10]
    np.testing.assert_array_equal(model.calls[2][0], rows(200, 10))


# --- limits ------------------------------------------------------------------------------


def test_full_queue_raises_overloaded_at_once() -> None:
    model = Model(gated=True)

    async def main() -> AdaptiveBatcher:
        batcher = AdaptiveBatcher(model, combine=np.concatenate, max_queue_rows=10)
        blocker = asyncio.ensure_future(batcher.submit(rows(0, 1), rows=1))
        await until(lambda: batcher.in_flight)
        queued = asyncio.ensure_future(batcher.submit(rows(10, 8), rows=8))
        await until(lambda: batcher.queued_rows == 8)
        started = time.perf_counter()
        with pytest.raises(OverloadedError) as info:
            await batcher.submit(rows(20, 3), rows=3)
        assert time.perf_counter() - started < 0.05
        assert info.value.retry_after >= 1 and info.value.code == "overloaded"
        with pytest.raises(PayloadTooLargeError, match="10 rows"):
            await batcher.submit(rows(30, 11), rows=11)
        fits = asyncio.ensure_future(batcher.submit(rows(40, 2), rows=2))  # 8 + 2 == 10
        await until(lambda: batcher.queued_rows == 10)
        model.release()
        for task, inputs in ((blocker, rows(0, 1)), (queued, rows(10, 8)), (fits, rows(40, 2))):
            check(await task, inputs)
        await batcher.close()
        return batcher

    batcher = run(main())
    assert batcher.stats.rejected_requests == 1
    assert not model.saw(20) and not model.saw(30)


def test_expired_queued_request_never_reaches_the_model() -> None:
    model = Model(gated=True)

    async def main() -> AdaptiveBatcher:
        batcher = AdaptiveBatcher(model, combine=np.concatenate)
        blocker = asyncio.ensure_future(batcher.submit(rows(0, 1), rows=1))
        await until(lambda: batcher.in_flight)
        with pytest.raises(DeadlineExceededError, match=r"0\.05 s"):
            await batcher.submit(rows(50, 2), rows=2, timeout_s=0.05)
        assert batcher.queued_rows == 0
        model.release()
        check(await blocker, rows(0, 1))
        check(await batcher.submit(rows(70, 1), rows=1, timeout_s=1.0), rows(70, 1))
        await batcher.close()
        return batcher

    batcher = run(main())
    assert not model.saw(50) and not model.saw(51)
    assert model.sizes == [1, 1] and batcher.stats.dropped_requests == 1


def test_expired_request_is_dropped_by_the_clock_before_dispatch() -> None:
    now = [0.0]
    model = Model(gated=True)

    async def main() -> None:
        batcher = AdaptiveBatcher(model, combine=np.concatenate, clock=lambda: now[0])
        blocker = asyncio.ensure_future(batcher.submit(rows(0, 1), rows=1))
        await until(lambda: batcher.in_flight)
        late = asyncio.ensure_future(batcher.submit(rows(50, 1), rows=1, timeout_s=5.0))
        await until(lambda: batcher.queued_rows == 1)
        now[0] = 6.0  # its deadline passes while the model is busy
        model.release()
        check(await blocker, rows(0, 1))
        with pytest.raises(DeadlineExceededError):
            await late
        await batcher.close()

    run(main())
    assert not model.saw(50)


def test_hanging_model_times_out_each_request_without_blocking_the_loop() -> None:
    model = Model(gated=True)

    async def main() -> None:
        batcher = AdaptiveBatcher(model, combine=np.concatenate)
        calls = [batcher.submit(rows(i, 1), rows=1, timeout_s=0.05) for i in range(3)]
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticking = asyncio.ensure_future(ticker())
        started = time.perf_counter()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert time.perf_counter() - started < 0.5
        assert all(isinstance(r, DeadlineExceededError) for r in results)
        assert ticks >= 3 and batcher.in_flight  # the loop kept running
        ticking.cancel()
        model.release()
        await batcher.close()

    run(main())


def test_small_batches_run_on_the_loop_larger_ones_in_the_model_thread() -> None:
    threads: list[tuple[int, int]] = []  # (rows, thread) per call

    def run_batch(X: np.ndarray, params: Mapping[str, Any]) -> tuple[Any, ...]:
        threads.append((len(X), threading.get_ident()))
        return X[:, 0] * 2.0, X[:, 0] * 3.0

    async def main() -> int:
        batcher = AdaptiveBatcher(run_batch, combine=np.concatenate, max_batch_size=4,
                                  inline_rows=4)
        assert batcher.inline_rows == 4
        check(await batcher.submit(rows(0, 3), rows=3), rows(0, 3))
        check(await batcher.submit(rows(10, 5), rows=5), rows(10, 5))  # alone: too large
        # Concurrent small requests still share a batch: they queue while the loop
        # runs their callers, and the consumer takes them together (4 rows at most).
        parts = [rows(100 + 10 * i, 1) for i in range(8)]
        for part, result in zip(parts, await asyncio.gather(
                *(batcher.submit(p, rows=1) for p in parts)), strict=True):
            check(result, part)
        await batcher.close()
        return threading.get_ident()

    loop_thread = run(main())
    assert threads[0] == (3, loop_thread)
    assert threads[1][0] == 5 and threads[1][1] != loop_thread
    assert [n for n, _ in threads[2:]] == [4, 4]
    assert all(thread == loop_thread for _, thread in threads[2:])


def test_a_failing_call_on_the_loop_fails_only_its_batch_sanitized() -> None:
    def run_batch(X: np.ndarray, params: Mapping[str, Any]) -> tuple[Any, ...]:
        if params.get("fail"):
            raise ValueError("secret /etc/path")
        if params.get("short"):
            return (X[:-1, 0],)
        return (X[:, 0] * 2.0,)

    async def main() -> AdaptiveBatcher:
        batcher = AdaptiveBatcher(run_batch, combine=np.concatenate, inline_rows=64)
        failed, short = await asyncio.gather(
            batcher.submit(rows(0, 2), rows=2, params={"fail": True}),
            batcher.submit(rows(5, 2), rows=2, params={"short": True}),
            return_exceptions=True)
        assert isinstance(failed, PredictionFailedError)
        text = str(failed) + repr(failed.to_dict())
        assert "ValueError" in text and "secret" not in text and "/etc" not in text
        assert isinstance(short, PredictionFailedError)
        assert "it returned 1 predictions for 2 rows" in str(short)
        (doubled,) = await batcher.submit(rows(7, 3), rows=3)
        np.testing.assert_array_equal(doubled, rows(7, 3)[:, 0] * 2.0)
        await batcher.close()
        return batcher

    stats = run(main()).stats
    assert stats.batches == 3 and stats.failed_batches == 2


def test_cancelled_callers_do_not_break_their_batch() -> None:
    model = Model(gated=True)

    async def main() -> None:
        batcher = AdaptiveBatcher(model, combine=np.concatenate)
        # two requests in the running batch; one caller goes away mid-call
        kept = asyncio.ensure_future(batcher.submit(rows(0, 2), rows=2))
        gone = asyncio.ensure_future(batcher.submit(rows(10, 2), rows=2))
        await until(lambda: batcher.in_flight)
        gone.cancel()
        # three queued requests; the middle caller goes away before dispatch
        queued = [asyncio.ensure_future(batcher.submit(rows(i, 1), rows=1)) for i in (20, 30, 40)]
        await until(lambda: batcher.queued_rows == 3)
        queued[1].cancel()
        await until(lambda: batcher.queued_rows == 2)
        model.release()
        check(await kept, rows(0, 2))
        with pytest.raises(asyncio.CancelledError):
            await gone
        check(await queued[0], rows(20, 1))
        check(await queued[2], rows(40, 1))
        with pytest.raises(asyncio.CancelledError):
            await queued[1]
        check(await batcher.submit(rows(50, 1), rows=1), rows(50, 1))
        await batcher.close()

    run(main())
    assert model.sizes == [4, 2, 1]
    assert not model.saw(30)


# --- failures ----------------------------------------------------------------------------


def test_model_error_is_sanitized_fails_only_its_batch_and_serving_goes_on() -> None:
    def run_batch(X: np.ndarray, params: Mapping[str, Any]) -> tuple[Any, ...]:
        if params.get("fail"):
            raise ValueError("secret /etc/path")
        return (X[:, 0] * 2.0, None)

    async def main() -> AdaptiveBatcher:
        batcher = AdaptiveBatcher(run_batch, combine=np.concatenate)
        failed = await asyncio.gather(
            *(batcher.submit(rows(i, 2), rows=2, params={"fail": True}) for i in range(3)),
            return_exceptions=True)
        for error in failed:
            assert isinstance(error, PredictionFailedError)
            text = str(error) + repr(error.to_dict())
            assert "ValueError" in text and "secret" not in text and "/etc" not in text
            assert error.__cause__ is None
        doubled, nothing = await batcher.submit(rows(5, 3), rows=3)
        assert nothing is None
        np.testing.assert_array_equal(doubled, rows(5, 3)[:, 0] * 2.0)
        await batcher.close()
        return batcher

    stats = run(main()).stats
    assert stats.batches == 2 and stats.failed_batches == 1


def test_wrong_row_count_fails_the_whole_batch() -> None:
    def run_batch(X: np.ndarray, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return (X[:-1, 0],)

    async def main() -> list[Any]:
        batcher = AdaptiveBatcher(run_batch, combine=np.concatenate)
        results = await asyncio.gather(batcher.submit(rows(0, 3), rows=3),
                                       batcher.submit(rows(10, 4), rows=4),
                                       return_exceptions=True)
        await batcher.close()
        return results

    for error in run(main()):
        assert isinstance(error, PredictionFailedError)
        assert "it returned 6 predictions for 7 rows" in str(error)


def test_failing_combine_is_reported_without_its_message() -> None:
    def combine(parts: list[Any]) -> Any:
        raise ValueError("secret column names")

    async def main() -> list[Any]:
        batcher = AdaptiveBatcher(Model(), combine=combine)
        results = await asyncio.gather(batcher.submit(rows(0, 1), rows=1),
                                       batcher.submit(rows(1, 1), rows=1),
                                       return_exceptions=True)
        check(await batcher.submit(rows(2, 1), rows=1), rows(2, 1))  # alone: not combined
        await batcher.close()
        return results

    for error in run(main()):
        assert isinstance(error, PredictionFailedError)
        assert "combined (ValueError)" in str(error) and "secret" not in str(error)


# --- lifecycle -----------------------------------------------------------------------------


def test_close_with_drain_finishes_queued_work_then_refuses() -> None:
    model = Model(gated=True)

    async def main() -> None:
        batcher = AdaptiveBatcher(model, combine=np.concatenate)
        parts = [rows(0, 1), rows(10, 2), rows(20, 3)]
        tasks = [asyncio.ensure_future(batcher.submit(parts[0], rows=1))]
        await until(lambda: batcher.in_flight)
        tasks += [asyncio.ensure_future(batcher.submit(p, rows=len(p))) for p in parts[1:]]
        await until(lambda: batcher.queued_rows == 5)
        closing = asyncio.ensure_future(batcher.close(drain=True))
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError):
            await batcher.submit(rows(30, 1), rows=1)
        model.release()
        await closing
        assert batcher.closed and batcher.queued_rows == 0 and not batcher.in_flight
        for task, p in zip(tasks, parts, strict=True):
            assert task.done()
            check(task.result(), p)
        with pytest.raises(OverloadedError):
            await batcher.submit(rows(40, 1), rows=1)
        await batcher.close()  # idempotent

    run(main())
    assert model.sizes == [1, 5]


def test_close_without_drain_fails_pending_requests_as_overloaded() -> None:
    model = Model(gated=True)
    executor = ThreadPoolExecutor(max_workers=1)

    async def main() -> None:
        batcher = AdaptiveBatcher(model, combine=np.concatenate, executor=executor)
        running = asyncio.ensure_future(batcher.submit(rows(0, 1), rows=1))
        await until(lambda: batcher.in_flight)
        queued = asyncio.ensure_future(batcher.submit(rows(10, 1), rows=1))
        await until(lambda: batcher.queued_rows == 1)
        await batcher.close(drain=False)
        for task in (running, queued):
            with pytest.raises(OverloadedError):
                await task
        model.release()
        executor.shutdown(wait=True)  # the abandoned call still finishes in its thread

    run(main())
    assert not model.saw(10)


def test_invalid_limits_and_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        AdaptiveBatcher(Model(), combine=np.concatenate, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        AdaptiveBatcher(Model(), combine=np.concatenate, max_wait_ms=-1)
    with pytest.raises(ValueError, match="max_queue_rows"):
        AdaptiveBatcher(Model(), combine=np.concatenate, max_queue_rows=0)
    with pytest.raises(ValueError, match="inline_rows"):
        AdaptiveBatcher(Model(), combine=np.concatenate, inline_rows=-1)

    async def main() -> None:
        batcher = AdaptiveBatcher(Model(), combine=np.concatenate)
        with pytest.raises(ValueError, match="rows"):
            await batcher.submit(rows(0, 1), rows=-1)
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(rows(0, 1), rows=1, timeout_s=0)
        await batcher.close()

    run(main())
