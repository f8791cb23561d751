"""The recorder: one record per answered request for every monitor, bounded, taken back
once per flush and handed whole to each monitor; a failing monitor spares the others,
and two flushes at once never split or lose a record."""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from modelhost.monitoring.record import (
    FIELDS,
    INPUTS,
    MODEL,
    REQUEST_ID,
    STATUS,
    Recorder,
    Records,
)


@dataclass(frozen=True)
class Seen:
    request_id: str
    model: str | None = "iris"
    version: str | None = "1.0.0"
    arm: Any = None
    status: int = 200
    at: float = 100.0
    latency_s: float = 0.001
    rows: int = 1
    inputs: Any = None
    predictions: Any = None
    probabilities: Any = None


class Monitor:
    def __init__(self, name: str = "kept", *, failing: bool = False) -> None:
        self.name = name
        self.failing = failing
        self.seen: list[Records] = []

    def consume(self, records: Records) -> int:
        self.seen.append(records)
        if self.failing:
            raise RuntimeError("the monitor's database is down")
        return len(records[0])


def test_every_monitor_gets_the_same_records_by_field() -> None:
    log, profiles = Monitor("log"), Monitor("profiles")
    recorder = Recorder([log, profiles])
    inputs = np.array([[1.0, 2.0]])
    recorder.observe(Seen("a", inputs=inputs))
    recorder.observe(Seen("b", status=500))
    assert recorder.pending == 2
    assert recorder.flush() == 2 and recorder.pending == 0
    assert log.seen[0] is profiles.seen[0]  # taken once, handed to both
    records = log.seen[0]
    assert len(records) == len(FIELDS)
    assert records[REQUEST_ID] == ["a", "b"] and records[STATUS] == [200, 500]
    assert records[INPUTS][0] is inputs  # by reference, never copied


def test_requests_of_no_known_version_are_not_recorded() -> None:
    recorder = Recorder([Monitor()])
    recorder.observe(Seen("made-up", model=None, version=None))
    recorder.observe(Seen("refused", version=None))
    assert recorder.pending == 0


def test_a_flush_with_nothing_recorded_still_reaches_every_monitor() -> None:
    """The profiles retry their unwritten windows at every flush."""
    monitor = Monitor()
    assert Recorder([monitor]).flush() == 0
    assert monitor.seen == [[[] for _ in FIELDS]]


def test_the_buffer_is_bounded_in_requests_and_rows() -> None:
    by_requests = Recorder([Monitor()], max_requests=2)
    for i in range(3):
        by_requests.observe(Seen(f"r{i}"))
    assert by_requests.pending == 2 and by_requests.dropped == 1
    by_rows = Recorder([Monitor()], max_rows=10)
    by_rows.observe(Seen("six", rows=6))
    by_rows.observe(Seen("five", rows=5))  # 11 rows: refused
    by_rows.observe(Seen("four", rows=4))
    assert by_rows.pending == 2 and by_rows.dropped == 1
    by_rows.flush()
    by_rows.observe(Seen("ten", rows=10))  # the flush made room
    assert by_rows.pending == 1 and by_rows.dropped == 1


def test_a_failing_monitor_is_logged_and_spares_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    failing, kept = Monitor("broken", failing=True), Monitor()
    recorder = Recorder([failing, kept])
    for i in range(3):
        recorder.observe(Seen(f"r{i}"))
        assert recorder.flush() == 1
    assert [r[REQUEST_ID] for r in kept.seen] == [["r0"], ["r1"], ["r2"]]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [  # once a minute, not every flush
        "monitoring: broken failed on 1 requests (logged at most once a minute)"]


def test_flushes_at_once_take_whole_records_and_lose_none() -> None:
    """A feedback request's flush may run beside the flusher's, while the event loop
    records more: every record is handed over once, whole."""
    monitor = Monitor()
    recorder = Recorder([monitor])
    total = 30_000
    errors: list[Exception] = []
    done = threading.Event()

    def flushes() -> None:
        try:
            while not done.is_set():
                recorder.flush()
        except Exception as exc:  # reported below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=flushes) for _ in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for t in threads:
            t.start()
        for i in range(total):  # the event loop's side, while both flush
            recorder.observe(Seen(f"r{i}", model=f"m{i}"))
    finally:
        done.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
    assert errors == []
    recorder.flush()
    ids = [i for records in monitor.seen for i in records[REQUEST_ID]]
    assert sorted(ids) == sorted(f"r{i}" for i in range(total))
    for records in monitor.seen:  # every record whole: its fields still belong together
        assert [m[1:] for m in records[MODEL]] == [i[1:] for i in records[REQUEST_ID]]


def test_a_second_flush_waits_for_the_first() -> None:
    """A feedback request's flush may start while the flusher's runs: it waits, so that
    the monitors (whose counters have one writer each) never run twice at once."""
    inside, release = threading.Event(), threading.Event()

    class Slow:
        name = "slow"
        calls = 0

        def consume(self, records: Records) -> None:
            self.calls += 1
            inside.set()
            release.wait(10)

    slow = Slow()
    recorder = Recorder([slow])
    recorder.observe(Seen("a"))
    first = threading.Thread(target=recorder.flush)
    second = threading.Thread(target=recorder.flush)
    first.start()
    try:
        assert inside.wait(10)
        inside.clear()
        second.start()
        assert not inside.wait(0.3)  # the second flush has not reached the monitor
        assert slow.calls == 1
    finally:
        release.set()
        first.join(10)
        if second.is_alive():
            second.join(10)
    assert slow.calls == 2
