"""The observers' record buffer: whole records in order (by field), bounded, safe across
two threads, and nothing per record for the garbage collector; and grouping by field."""

from __future__ import annotations

import collections
import dataclasses
import gc
import sys
import threading
from typing import Any

import numpy as np
import pytest

from modelhost.monitoring.buffer import RecordBuffer, group_rows


def test_records_come_back_by_field_in_order_up_to_the_limit() -> None:
    buffer = RecordBuffer(3, capacity=10)
    for i in range(5):
        assert buffer.offer((f"r{i}", i, i / 2))
    assert len(buffer) == 5
    assert buffer.take(2) == [["r0", "r1"], [0, 1], [0.0, 0.5]]
    assert len(buffer) == 3
    assert buffer.take() == [["r2", "r3", "r4"], [2, 3, 4], [1.0, 1.5, 2.0]]
    assert buffer.take() == [[], [], []] and len(buffer) == 0


def test_a_full_buffer_refuses_and_keeps_what_it_has() -> None:
    buffer = RecordBuffer(2, capacity=3)
    assert [buffer.offer((i, -i)) for i in range(5)] == [True, True, True, False, False]
    assert buffer.take() == [[0, 1, 2], [0, -1, -2]]
    assert buffer.offer((9, -9)) and buffer.take() == [[9], [-9]]


def test_records_are_grouped_by_key_fields_in_order() -> None:
    fields: list[list[Any]] = [["a", "b", "a", "a"], ["1", "1", "2", "1"], [10, 11, 12, 13]]
    assert group_rows(fields, 0, 1) == {
        ("a", "1"): [["a", "a"], ["1", "1"], [10, 13]],
        ("b", "1"): [["b"], ["1"], [11]],
        ("a", "2"): [["a"], ["2"], [12]]}
    one: list[list[Any]] = [["a", "a"], ["1", "1"], [10, 11]]
    assert group_rows(one, 0, 1) == {("a", "1"): one}
    assert group_rows([[], [], []], 0, 1) == {}


def test_limits_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecordBuffer(0, capacity=1)
    with pytest.raises(ValueError, match="at least 1"):
        RecordBuffer(2, capacity=0)


@dataclasses.dataclass(slots=True)
class _Kept:  # what the observers buffered before: the observation object itself
    request_id: str
    at: float
    inputs: object


def _tracked_after(keep: object, records: int) -> int:
    """Containers the collector tracks that ``keep`` adds by holding ``records`` requests
    of strings, floats and numpy arrays."""
    rows = np.zeros((records, 4))
    gc.collect()
    before = len(gc.get_objects())
    if isinstance(keep, RecordBuffer):
        for i in range(records):
            keep.offer((f"id-{i}", float(i), rows[i:i + 1]))
    else:
        assert isinstance(keep, collections.deque)
        for i in range(records):
            keep.append(_Kept(f"id-{i}", float(i), rows[i:i + 1]))
    return len(gc.get_objects()) - before


def test_buffered_records_leave_nothing_for_the_garbage_collector() -> None:
    """The point of the buffer: 10,000 requests held until a flush add no tracked
    container (an object per request, as before, adds one each)."""
    assert _tracked_after(RecordBuffer(3, capacity=20_000), 10_000) < 50
    assert _tracked_after(collections.deque(), 10_000) >= 10_000


def test_records_stay_whole_while_one_thread_offers_and_another_takes() -> None:
    buffer = RecordBuffer(3, capacity=1_000_000)
    total = 200_000
    taken: list[tuple[int, str, int]] = []
    done = threading.Event()

    def offer() -> None:
        for i in range(total):
            buffer.offer((i, "x", -i))
        done.set()

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the threads take turns as often as they can
    try:
        writer = threading.Thread(target=offer)
        writer.start()
        while not done.is_set():
            taken.extend(zip(*buffer.take(1_000), strict=True))
        writer.join()
    finally:
        sys.setswitchinterval(switch)
    taken.extend(zip(*buffer.take(), strict=True))
    assert taken == [(i, "x", -i) for i in range(total)]
