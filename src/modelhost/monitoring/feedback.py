"""Feedback: ground-truth labels joined to the prediction log by request id.

A label names the request it is for. It is checked against what that request predicted
(one label per row, of the kind of the predictions: a class name is no number) and stored
with the request's model and version, so live metrics can be computed per version. A
label sent again replaces the earlier one and still counts once.

Feedback may arrive before the server has written the prediction to its log (it flushes
every few seconds): a request id not found yet is looked for again until ``wait_s`` has
passed (the flush interval and a margin) before it is reported as unknown. Nothing of a
refused item is stored; the other items of the same call are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from modelhost._utils import REQUEST_ID, utcnow
from modelhost.entities import LoggedPrediction
from modelhost.store.monitoring import Label, PredictionLogStore

log = logging.getLogger(__name__)

MAX_ITEMS = 10_000  # labels per call


@dataclass(frozen=True)
class Rejected:
    """One refused item: its position in the call, its request id, and why."""

    index: int
    request_id: str | None
    code: str  # "invalid_input" or "not_found"
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "request_id": self.request_id, "code": self.code,
                "message": self.message}


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    rejected: tuple[Rejected, ...] = ()


class FeedbackService:
    def __init__(self, store: PredictionLogStore, *, wait_s: float = 0.0,
                 flush: Callable[[], object] = lambda: None, poll_s: float = 0.25,
                 retention_days: int = 30, now: Callable[[], dt.datetime] = utcnow,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """``flush`` writes this process's buffered predictions (so that a label for a
        request this process just answered joins at once); ``wait_s`` is how long other
        processes' buffers are waited for (on the event loop: a waiting call holds no
        thread; the database is read from worker threads)."""
        self._store = store
        self._wait_s = wait_s
        self._flush = flush
        self._poll_s = poll_s
        self._retention_days = retention_days
        self._now = now
        self._sleep = sleep

    async def submit(self, items: Sequence[tuple[Any, Any]], *,
                     models: Collection[str] | None = None) -> FeedbackResult:
        """Check and store ``(request_id, label)`` pairs; a request id given twice keeps
        its last label. Waits up to ``wait_s`` while request ids are not logged yet.
        With ``models`` (a key limited to them), requests of other models are reported
        as unknown, like ids that were never logged."""
        rejected: list[Rejected] = []
        wanted: dict[str, tuple[int, Any]] = {}
        for index, (request_id, label) in enumerate(items):
            problem = _shape_problem(request_id, label)
            if problem is not None:
                rejected.append(Rejected(index, request_id if isinstance(request_id, str)
                                         else None, "invalid_input", problem))
            else:
                wanted[request_id] = (index, label)
        logged = await self._find(set(wanted))
        labels: list[Label] = []
        for request_id, (index, label) in wanted.items():
            prediction = logged.get(request_id)
            if prediction is None or (models is not None and prediction.model not in models):
                rejected.append(Rejected(index, request_id, "not_found", (
                    f"request id {request_id!r} is not in the prediction log: unknown, "
                    "not sampled, or older than the retention of "
                    f"{self._retention_days} days")))
                continue
            rows, problem = _labels_for(prediction, label)
            if problem is not None:
                rejected.append(Rejected(index, request_id, "invalid_input",
                                         f"label for request {request_id!r}: {problem}"))
                continue
            labels.append(Label(request_id, prediction.model, prediction.version,
                                orjson.dumps(rows).decode()))
        await asyncio.to_thread(self._store.record_feedback, labels, now=self._now())
        return FeedbackResult(len(labels), tuple(sorted(rejected, key=lambda r: r.index)))

    async def _find(self, request_ids: set[str]) -> dict[str, LoggedPrediction]:
        if not request_ids:
            return {}
        found = await self._lookup(request_ids)
        if len(found) == len(request_ids):
            return found
        try:
            await asyncio.to_thread(self._flush)
        except Exception:  # the log's own trouble; look in the database anyway
            log.warning("feedback: writing this process's prediction log failed",
                        exc_info=log.isEnabledFor(logging.DEBUG))
        deadline = time.monotonic() + self._wait_s
        while True:
            found.update(await self._lookup(request_ids - set(found)))
            if len(found) == len(request_ids) or time.monotonic() >= deadline:
                return found
            await self._sleep(self._poll_s)

    async def _lookup(self, request_ids: set[str]) -> dict[str, LoggedPrediction]:
        return await asyncio.to_thread(self._store.find, request_ids, inputs=False)


def _shape_problem(request_id: Any, label: Any) -> str | None:
    if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
        return ("'request_id' must be the X-Request-Id of a prediction: 1-64 characters "
                "from A-Z, a-z, 0-9, '.', '_', ':' and '-'")
    if label is None:
        return f"request {request_id!r} has no 'label'"
    return None


def _labels(count: int) -> str:
    return "1 label" if count == 1 else f"{count} labels"


_INT64 = 2 ** 63


def _kind(value: Any) -> str | None:
    """The kind of a JSON value, or None for what no label may be (also numbers beyond
    64-bit integers and non-finite ones, which JSON parsers may let through)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number" if -_INT64 <= value < _INT64 else None
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else None
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return None


def _same_kind(label: Any, prediction: Any) -> bool:
    if isinstance(prediction, list):
        return (isinstance(label, list) and len(label) == len(prediction)
                and all(_same_kind(x, p) for x, p in zip(label, prediction, strict=True)))
    return _kind(label) == _kind(prediction) and _kind(label) is not None


def _labels_for(prediction: LoggedPrediction, label: Any) -> tuple[list[Any], str | None]:
    """The labels, one per predicted row, or why ``label`` does not fit the prediction."""
    predicted = prediction.outputs.get("predictions") if isinstance(
        prediction.outputs, dict) else None
    if not isinstance(predicted, list) or not predicted:
        return [], "the logged prediction has no predictions to compare with"
    first = predicted[0]
    if len(predicted) == 1 and _same_kind(label, first):
        return [label], None
    if isinstance(label, list) and not isinstance(first, list) and len(label) != len(predicted):
        return [], (f"expected {_labels(len(predicted))} (one per row predicted), "
                    f"got {len(label)}")
    if isinstance(label, list) and len(label) == len(predicted):
        for row, (x, p) in enumerate(zip(label, predicted, strict=True)):
            if not _same_kind(x, p):
                return [], (f"row {row}: expected {_kind(p)} like the model's predictions "
                            f"({p!r}), got {_kind(x) or type(x).__name__} {x!r}")
        return list(label), None
    if len(predicted) > 1:
        return [], (f"expected a list of {len(predicted)} labels (one per row predicted), "
                    f"got {_kind(label) or type(label).__name__} {label!r}")
    return [], (f"expected {_kind(first)} like the model's predictions ({first!r}), got "
                f"{_kind(label) or type(label).__name__} {label!r}")
