"""The prediction log and its feedback: appended in batches, joined by request id, pruned.

Inputs, outputs and labels are stored as JSON text (written by orjson off the request
path); a request id logged twice (a client reusing its X-Request-Id) keeps its first entry,
and a label sent twice keeps the last.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import CursorResult, delete, func, select

from modelhost._utils import as_utc
from modelhost.entities import Feedback, LoggedPrediction
from modelhost.store.database import Database, insert_for
from modelhost.store.schema import FeedbackRow, PredictionLogRow

_CHUNK = 500  # ids per IN (...) list: well under every database's parameter limit
_APPEND = ('INSERT INTO prediction_log (request_id, model, version, arm, at, "rows", inputs, '
           "outputs) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING")
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(slots=True)  # thousands per flush: a frozen dataclass costs 1 µs more each
class LogEntry:
    """One prediction, ready to store (its inputs and outputs already JSON text)."""

    request_id: str
    model: str
    version: str
    arm: str | None
    at: dt.datetime | float  # a float is seconds since the epoch (what a flush has)
    rows: int
    inputs: str
    outputs: str


@dataclass(frozen=True, slots=True)
class Label:
    """One label to store for a logged request (``label`` is JSON text)."""

    request_id: str
    model: str
    version: str
    label: str


class PredictionLogStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Store a batch of predictions in one transaction (one multi-row insert)."""
        if not entries:
            return
        with self._db.session(write=True) as s:
            connection = s.connection()
            # Through the driver's executemany with plain tuples: SQLAlchemy's per-row
            # parameter processing would cost more than everything else of a row.
            rows: list[tuple[Any, ...]]
            if connection.dialect.name == "postgresql":
                rows = [(e.request_id, e.model, e.version, e.arm, _utc(e.at), e.rows,
                         e.inputs, e.outputs) for e in entries]
                connection.exec_driver_sql(_APPEND.replace("?", "%s"), rows)
            else:  # SQLite: times as SQLAlchemy stores them (UTC, without the zone)
                rows = [(e.request_id, e.model, e.version, e.arm,
                         _sqlite_time(e.at), e.rows,
                         e.inputs, e.outputs) for e in entries]
                connection.exec_driver_sql(_APPEND, rows)

    def find(self, request_ids: Iterable[str], *,
             inputs: bool = True) -> dict[str, LoggedPrediction]:
        """The logged predictions among ``request_ids``, by id; without their inputs
        (``None``) unless ``inputs``, which may be thousands of rows each."""
        found: dict[str, LoggedPrediction] = {}
        ids = sorted(set(request_ids))
        t = PredictionLogRow
        columns = [t.request_id, t.model, t.version, t.arm, t.at, t.rows, t.outputs]
        if inputs:
            columns.append(t.inputs)
        with self._db.session() as s:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                for row in s.execute(select(*columns).where(t.request_id.in_(chunk))):
                    found[row.request_id] = LoggedPrediction(
                        request_id=row.request_id, model=row.model, version=row.version,
                        arm=row.arm, at=as_utc(row.at), rows=row.rows,
                        inputs=orjson.loads(row.inputs) if inputs else None,
                        outputs=orjson.loads(row.outputs))
        return found

    def record_feedback(self, labels: Sequence[Label], *, now: dt.datetime) -> None:
        """Store labels in one transaction; a request's earlier label is replaced."""
        if not labels:
            return
        rows = [{"request_id": x.request_id, "model": x.model, "version": x.version,
                 "label": x.label, "received_at": now, "updated_at": now} for x in labels]
        with self._db.session(write=True) as s:
            statement = insert_for(s, FeedbackRow)
            s.execute(statement.on_conflict_do_update(
                index_elements=["request_id"],
                set_={"label": statement.excluded.label,
                      "updated_at": statement.excluded.updated_at}), rows)

    def feedback(self, request_ids: Iterable[str]) -> dict[str, Feedback]:
        """The feedback stored for ``request_ids``, by id."""
        found: dict[str, Feedback] = {}
        ids = sorted(set(request_ids))
        with self._db.session() as s:
            for start in range(0, len(ids), _CHUNK):
                for row in s.scalars(select(FeedbackRow).where(
                        FeedbackRow.request_id.in_(ids[start:start + _CHUNK]))):
                    found[row.request_id] = Feedback(
                        request_id=row.request_id, model=row.model, version=row.version,
                        label=orjson.loads(row.label), received_at=as_utc(row.received_at),
                        updated_at=as_utc(row.updated_at))
        return found

    def labelled(self, model: str, version: str, *, start: dt.datetime,
                 end: dt.datetime) -> tuple[int, list[tuple[Any, Any]]]:
        """The predictions of ``model`` ``version`` made in [start, end): how many were
        logged, and the (outputs, labels) of those that have feedback, oldest first."""
        p, f = PredictionLogRow, FeedbackRow
        window = (p.model == model, p.version == version, p.at >= start, p.at < end)
        with self._db.session() as s:
            logged = s.scalar(select(func.count()).select_from(p).where(*window)) or 0
            rows = s.execute(select(p.outputs, f.label).join(
                f, f.request_id == p.request_id).where(*window).order_by(p.at))
            pairs = [(orjson.loads(outputs), orjson.loads(label)) for outputs, label in rows]
        return int(logged), pairs

    def prune(self, *, before: dt.datetime) -> tuple[int, int]:
        """Delete predictions made, and feedback received, before ``before``; returns
        how many of each."""
        with self._db.session(write=True) as s:
            predictions: CursorResult[Any] = s.execute(  # type: ignore[assignment]
                delete(PredictionLogRow).where(PredictionLogRow.at < before))
            labels: CursorResult[Any] = s.execute(  # type: ignore[assignment]
                delete(FeedbackRow).where(FeedbackRow.received_at < before))
            return predictions.rowcount, labels.rowcount


def _utc(at: dt.datetime | float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc) if isinstance(at, float) else at


def _sqlite_time(at: dt.datetime | float) -> str:
    """The text SQLAlchemy stores for a UTC time in SQLite; from seconds since the epoch
    without a datetime (a flush writes thousands: formatting each cost 3 µs)."""
    if not isinstance(at, float):
        return at.astimezone(dt.timezone.utc).strftime(_SQLITE_TIME)
    second = int(at // 1)
    return f"{_second_text(second)}.{int((at - second) * 1e6):06d}"


@functools.lru_cache(maxsize=256)
def _second_text(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
