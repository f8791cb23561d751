"""Feedback: labels checked against what the request predicted, joined by request id in
either order (before or after the prediction is written), the last label kept and
counted once, nothing stored of a refused item; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from typing import Any

import pytest

from modelhost import Client
from modelhost.monitoring import FeedbackResult, FeedbackService, PredictionLog, Rejected
from modelhost.store.monitoring import LogEntry, PredictionLogStore

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)


def entry(request_id: str, predictions: list[Any], version: str = "1.0.0") -> LogEntry:
    import orjson

    return LogEntry(request_id, "iris", version, "stable", NOW, len(predictions),
                    "[[1.0]]", orjson.dumps({"predictions": predictions}).decode())


@pytest.fixture
def store(client: Client) -> PredictionLogStore:
    client.predictions.append([
        entry("one", [2]), entry("three", [0, 1, 2], version="1.0.1"),
        entry("words", ["setosa"]), entry("flag", [True]), entry("real", [0.25]),
        entry("multi", [[1, 2]])])
    return client.predictions


def service(store: PredictionLogStore, **kwargs: Any) -> Submit:
    return Submit(FeedbackService(store, now=lambda: NOW, **kwargs))


class Submit:
    """Runs the service's coroutine to completion, as the route's event loop would."""

    def __init__(self, service: FeedbackService) -> None:
        self.service = service

    def submit(self, items: list[tuple[Any, Any]]) -> FeedbackResult:
        return asyncio.run(self.service.submit(items))


def labels(store: PredictionLogStore, *ids: str) -> dict[str, Any]:
    return {k: (v.model, v.version, v.label) for k, v in store.feedback(ids).items()}


def test_labels_are_stored_one_per_row_with_the_requests_version(
        store: PredictionLogStore) -> None:
    result = service(store).submit([("one", 1), ("three", [0, 1, 1]), ("words", "virginica"),
                                    ("flag", False), ("real", 1), ("multi", [3, 4])])
    assert (result.accepted, result.rejected) == (6, ())
    assert labels(store, "one", "three", "words", "flag", "real", "multi") == {
        "one": ("iris", "1.0.0", [1]), "three": ("iris", "1.0.1", [0, 1, 1]),
        "words": ("iris", "1.0.0", ["virginica"]), "flag": ("iris", "1.0.0", [False]),
        "real": ("iris", "1.0.0", [1]), "multi": ("iris", "1.0.0", [[3, 4]])}
    assert service(store).submit([("one", [0])]).accepted == 1  # a list of one is one row
    assert labels(store, "one")["one"][2] == [0]


def test_a_label_sent_again_replaces_the_first_and_counts_once(
        store: PredictionLogStore) -> None:
    first = NOW
    service(store).submit([("one", 1)])
    later = Submit(FeedbackService(store, now=lambda: first + dt.timedelta(days=3)))
    assert later.submit([("one", 2), ("one", 0)]).accepted == 1  # the last one wins
    [stored] = store.feedback(["one"]).values()
    assert stored.label == [0]
    assert stored.received_at == first and stored.updated_at == first + dt.timedelta(days=3)


@pytest.mark.parametrize(("request_id", "label", "message"), [
    ("one", "setosa", "label for request 'one': expected a number like the model's "
                      "predictions (2), got a string 'setosa'"),
    ("one", True, "expected a number like the model's predictions (2), got a boolean True"),
    ("words", 3, "expected a string like the model's predictions ('setosa'), got a number 3"),
    ("three", [0, 1], "expected 3 labels (one per row predicted), got 2"),
    ("three", 1, "expected a list of 3 labels (one per row predicted), got a number 1"),
    ("three", [0, "x", 1], "row 1: expected a number like the model's predictions (1), "
                           "got a string 'x'"),
    ("multi", [1, 2, 3], "expected a list like the model's predictions ([1, 2]), "
                         "got a list [1, 2, 3]"),
    ("one", {"class": 1}, "got dict {'class': 1}"),
    ("one", 2 ** 64, "got int 18446744073709551616"),
    ("one", float("nan"), "got float nan"),
    ("one", float("inf"), "got float inf"),
    ("one", None, "request 'one' has no 'label'"),
    ("bad id!", 1, "'request_id' must be the X-Request-Id of a prediction"),
    (42, 1, "'request_id' must be the X-Request-Id of a prediction"),
])
def test_a_label_that_does_not_fit_is_refused_and_nothing_stored(
        store: PredictionLogStore, request_id: Any, label: Any, message: str) -> None:
    result = service(store).submit([(request_id, label)])
    assert result.accepted == 0
    [rejected] = result.rejected
    assert rejected.code == "invalid_input" and rejected.index == 0
    assert message in rejected.message, rejected.message
    assert store.feedback(["one", "three", "words", "multi"]) == {}


def test_unknown_request_ids_are_reported_per_item_and_the_others_stored(
        store: PredictionLogStore) -> None:
    result = service(store, retention_days=7).submit(
        [("nope", 1), ("one", 1), ("one", "x"), ("gone", 2)])
    assert [(r.index, r.request_id, r.code) for r in result.rejected] == [
        (0, "nope", "not_found"), (2, "one", "invalid_input"), (3, "gone", "not_found")]
    assert result.rejected[0].message == (
        "request id 'nope' is not in the prediction log: unknown, not sampled, or older "
        "than the retention of 7 days")
    # "one" appeared twice: its last label ("x") is the one checked, and it does not fit
    assert result.accepted == 0 and labels(store, "one") == {}


def test_a_label_that_arrives_before_its_prediction_is_written_joins(
        client: Client) -> None:
    """This process's buffer is flushed at once; another worker's within the wait."""
    store = client.predictions
    log = PredictionLog(store)

    class Seen:
        request_id, model, version, arm, status, rows = "local", "iris", "1.0.0", None, 200, 1
        at, latency_s = NOW.timestamp(), 0.001
        inputs, predictions, probabilities = [[1.0]], [1], None

    log.observe(Seen())
    local = Submit(FeedbackService(store, flush=log.flush, wait_s=0.0, now=lambda: NOW))
    assert local.submit([("local", 1)]).accepted == 1

    def other_worker() -> None:
        store.append([entry("remote", [2])])

    timer = threading.Timer(0.3, other_worker)
    timer.start()
    try:
        waiting = Submit(FeedbackService(store, wait_s=10.0, poll_s=0.05, now=lambda: NOW))
        assert waiting.submit([("remote", 2)]).accepted == 1
    finally:
        timer.join()
    assert labels(store, "local", "remote") == {"local": ("iris", "1.0.0", [1]),
                                                 "remote": ("iris", "1.0.0", [2])}


def test_the_wait_is_bounded_and_skipped_when_everything_is_found(
        store: PredictionLogStore) -> None:
    slept: list[float] = []
    flushed: list[int] = []
    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    quick = Submit(FeedbackService(store, wait_s=0.2, poll_s=0.05, now=lambda: NOW,
                                   flush=lambda: flushed.append(1), sleep=sleep))
    assert quick.submit([("one", 1)]).accepted == 1
    assert slept == [] and flushed == []  # found at once: no flush, no wait
    result = quick.submit([("missing", 1)])
    assert flushed == [1] and result.rejected == (
        Rejected(0, "missing", "not_found", result.rejected[0].message),)
    assert 2 <= len(slept) <= 6  # polled every 0.05 s until the 0.2 s deadline


def test_a_failing_flush_of_this_process_still_looks_in_the_database(
        store: PredictionLogStore) -> None:
    def broken() -> None:
        raise RuntimeError("the log's own trouble")

    sturdy = service(store, flush=broken, wait_s=0.0)
    assert sturdy.submit([("one", 1)]).accepted == 1  # found at once: no flush needed
    result = sturdy.submit([("missing", 1), ("one", 0)])
    assert result.accepted == 1 and [r.code for r in result.rejected] == ["not_found"]
