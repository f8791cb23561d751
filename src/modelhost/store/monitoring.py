"""The prediction log and its feedback: appended in chunks, joined by request id, pruned.

A flush writes each model version's requests as chunks (``LogChunk``) of at most
``CHUNK`` requests: one row holding their ids, times, inputs and outputs as JSON arrays,
and one narrow row per request id pointing at its chunk and position (what feedback and
lookups by id read). That is a third of the cost of a wide row and two indexes per
request (``benchmarks/monitoring/log_layout.py``). A request id logged twice (a client
reusing its X-Request-Id) is found at its first entry, and a label sent twice keeps the
last.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Table, delete, select

from modelhost._utils import as_utc
from modelhost.entities import Feedback, LoggedPrediction
from modelhost.store.database import Database, insert_for
from modelhost.store.schema import FeedbackRow, PredictionChunkRow, PredictionIdRow

JSON, ROWS, TABLE = 0, 1, 2  # how a request's inputs are kept (LogChunk.tabular)
CHUNK = 500  # requests per chunk: a lookup by id reads (and parses) one chunk's outputs
CHUNK_SPAN_S = 60.0  # at most between a chunk's first and last prediction (from append)
_IN = 500  # values per IN (...) list: well under every database's parameter limit
_CHUNKS: Table = PredictionChunkRow.__table__  # type: ignore[assignment]  # Core: cheaper than the ORM
_PRUNE_CHUNKS = 200  # chunks deleted per transaction (a short lock each)
# A chunk's request ids in one statement from one JSON array or one array parameter: an
# executemany would release and take back the GIL once per row, and each time it waits
# for the event loop's thread, which costs the server more than the insert itself.
_IDS = {"sqlite": "INSERT INTO prediction_ids (request_id, chunk, position) "
                  "SELECT value, ?, key FROM json_each(?) WHERE true "
                  "ON CONFLICT (request_id) DO NOTHING",
        "postgresql": "INSERT INTO prediction_ids (request_id, chunk, position) "
                      "SELECT id, %s, n - 1 FROM unnest(%s::text[]) WITH ORDINALITY AS t(id, n) "
                      "ON CONFLICT (request_id) DO NOTHING"}


@dataclass(slots=True)
class LogChunk:
    """Requests of one model version, ready to store as one chunk: per request its id,
    time (seconds since the epoch), rows, arm and how its inputs are kept (``tabular``:
    ``JSON`` a JSON value of their own, ``ROWS`` JSON rows under the chunk's
    ``columns``, ``TABLE`` float64 rows in ``table``, the chunk's binary array of all
    such rows in order); ``inputs`` and ``outputs`` are JSON arrays with one item per
    request (``null`` for ``TABLE`` inputs; outputs: ``{"predictions": [...]}``, with
    ``"probabilities"`` when the model has them)."""

    model: str
    version: str
    request_ids: list[str]
    at: list[float]
    rows: list[int]
    arms: list[str | None]
    columns: list[str] | None
    tabular: list[int]
    inputs: str
    outputs: str
    table: bytes | None = None


@dataclass(slots=True)
class LogEntry:
    """One prediction with its inputs and outputs already JSON text (what tests, imports
    and tools that have single requests write; the server writes chunks)."""

    request_id: str
    model: str
    version: str
    arm: str | None
    at: dt.datetime | float  # a float is seconds since the epoch
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
        """Store single predictions in one transaction: in chunks per model version of
        predictions made within ``CHUNK_SPAN`` of each other (a chunk is pruned whole)."""
        groups: dict[tuple[str, str], list[tuple[float, LogEntry]]] = {}
        for e in entries:
            groups.setdefault((e.model, e.version), []).append((_seconds(e.at), e))
        chunks = []
        for (model, version), group in groups.items():
            group.sort(key=lambda item: item[0])
            part: list[tuple[float, LogEntry]] = []
            for item in group:
                if part and (len(part) == CHUNK or item[0] - part[0][0] > CHUNK_SPAN_S):
                    chunks.append(_entries_chunk(model, version, part))
                    part = []
                part.append(item)
            chunks.append(_entries_chunk(model, version, part))
        self.append_chunks(chunks)

    def append_chunks(self, chunks: Sequence[LogChunk]) -> None:
        """Store chunks in one transaction: a row each, and a row per request id (an id
        already logged keeps pointing at its first entry)."""
        chunks = [c for c in chunks if c.request_ids]
        if not chunks:
            return
        with self._db.session(write=True) as s:
            connection = s.connection()
            dialect = connection.dialect.name
            for c in chunks:
                entries = orjson.dumps({"request_ids": c.request_ids, "at": c.at,
                                        "rows": c.rows, "arms": c.arms,
                                        "tabular": c.tabular}).decode()
                chunk = s.execute(_CHUNKS.insert().values(
                    model=c.model, version=c.version, first_at=_utc(min(c.at)),
                    last_at=_utc(max(c.at)), requests=len(c.request_ids), entries=entries,
                    columns=None if c.columns is None else orjson.dumps(c.columns).decode(),
                    inputs=c.inputs, outputs=c.outputs, table=c.table
                ).returning(_CHUNKS.c.id)
                ).scalar_one()
                ids = orjson.dumps(c.request_ids).decode() if dialect == "sqlite" \
                    else c.request_ids
                connection.exec_driver_sql(_IDS[dialect], (chunk, ids))

    def find(self, request_ids: Iterable[str], *,
             inputs: bool = True) -> dict[str, LoggedPrediction]:
        """The logged predictions among ``request_ids``, by id; without their inputs
        (``None``) unless ``inputs``, which may be thousands of rows each."""
        ids = sorted(set(request_ids))
        where: dict[int, list[tuple[str, int]]] = {}
        found: dict[str, LoggedPrediction] = {}
        with self._db.session() as s:
            for start in range(0, len(ids), _IN):
                for request_id, chunk_id, position in s.execute(
                        select(PredictionIdRow.request_id, PredictionIdRow.chunk,
                               PredictionIdRow.position).where(
                            PredictionIdRow.request_id.in_(ids[start:start + _IN]))):
                    where.setdefault(chunk_id, []).append((request_id, position))
            for chunk in _read_chunks(s, list(where), inputs=inputs):
                for request_id, position in where[chunk.id]:
                    found[request_id] = chunk.prediction(position, inputs=inputs)
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
            for start in range(0, len(ids), _IN):
                for row in s.scalars(select(FeedbackRow).where(
                        FeedbackRow.request_id.in_(ids[start:start + _IN]))):
                    found[row.request_id] = Feedback(
                        request_id=row.request_id, model=row.model, version=row.version,
                        label=orjson.loads(row.label), received_at=as_utc(row.received_at),
                        updated_at=as_utc(row.updated_at))
        return found

    def labelled(self, model: str, version: str, *, start: dt.datetime,
                 end: dt.datetime) -> tuple[int, list[tuple[Any, Any]]]:
        """The predictions of ``model`` ``version`` made in [start, end): how many were
        logged, and the (outputs, labels) of those that have feedback, oldest first."""
        c, i, f = PredictionChunkRow, PredictionIdRow, FeedbackRow
        low, high = start.timestamp(), end.timestamp()
        overlapping = select(c.id).where(c.model == model, c.version == version,
                                         c.last_at >= start, c.first_at < end)
        with self._db.session() as s:
            logged = 0
            for entries in s.scalars(select(c.entries).where(c.id.in_(overlapping))):
                logged += sum(low <= at < high for at in orjson.loads(entries)["at"])
            labels: dict[int, list[tuple[int, str]]] = {}
            for chunk_id, position, label in s.execute(
                    select(i.chunk, i.position, f.label)
                    .join(f, f.request_id == i.request_id)
                    .where(i.chunk.in_(overlapping), f.model == model,
                           f.version == version)):
                labels.setdefault(chunk_id, []).append((position, label))
            pairs: list[tuple[float, Any, Any]] = []
            for chunk in _read_chunks(s, list(labels), inputs=False):
                for position, label in labels[chunk.id]:
                    at = chunk.at[position]
                    if low <= at < high:
                        pairs.append((at, chunk.outputs[position], orjson.loads(label)))
        pairs.sort(key=lambda pair: pair[0])
        return logged, [(outputs, label) for _, outputs, label in pairs]

    def prune(self, *, before: dt.datetime) -> tuple[int, int]:
        """Delete the chunks whose last prediction was made, and feedback received, before
        ``before`` (a few hundred chunks per transaction); returns how many predictions
        and labels."""
        c = PredictionChunkRow
        predictions = 0
        while True:
            with self._db.session(write=True) as s:
                old = s.execute(select(c.id, c.requests, c.entries).where(
                    c.last_at < before).limit(_PRUNE_CHUNKS)).all()
                if not old:
                    break
                for chunk_id, requests, entries in old:
                    ids = orjson.loads(entries)["request_ids"]
                    for start in range(0, len(ids), _IN):
                        s.execute(delete(PredictionIdRow).where(
                            PredictionIdRow.request_id.in_(ids[start:start + _IN]),
                            PredictionIdRow.chunk == chunk_id))
                    predictions += requests
                s.execute(delete(c).where(c.id.in_([row.id for row in old])))
        with self._db.session(write=True) as s:
            labels = s.execute(delete(FeedbackRow).where(FeedbackRow.received_at < before))
            return predictions, labels.rowcount  # type: ignore[attr-defined]


@dataclass(slots=True)
class _Chunk:
    """A stored chunk, parsed."""

    id: int
    model: str
    version: str
    request_ids: list[str]
    at: list[float]
    rows: list[int]
    arms: list[str | None]
    tabular: list[int]
    columns: list[str] | None
    inputs: list[Any] | None
    outputs: list[Any]
    table: bytes | None = None

    def prediction(self, position: int, *, inputs: bool) -> LoggedPrediction:
        value = None
        if inputs and self.inputs is not None:
            value = self.inputs[position]
            kind = int(self.tabular[position])  # True/False in logs moved by 0007
            if kind == TABLE:
                value = self._table_rows(position)
            if kind != JSON:
                value = {"columns": self.columns, "data": value}
        return LoggedPrediction(
            request_id=self.request_ids[position], model=self.model, version=self.version,
            arm=self.arms[position], at=_utc(self.at[position]), rows=self.rows[position],
            inputs=value, outputs=self.outputs[position])

    def _table_rows(self, position: int) -> list[list[float | None]]:
        """The request's rows of the chunk's binary table (missing values as None, as
        JSON has them)."""
        import numpy as np  # only reading logged tables needs it, not every command

        assert self.table is not None and self.columns is not None
        before = sum(r for r, k in zip(self.rows[:position], self.tabular[:position],
                                       strict=True) if k == TABLE)
        width = len(self.columns)
        block = np.frombuffer(self.table, dtype="<f8").reshape(-1, width)[
            before:before + self.rows[position]]
        return [[None if math.isnan(v) else v for v in row] for row in block.tolist()]


def _read_chunks(s: Any, ids: list[int], *, inputs: bool) -> Iterable[_Chunk]:
    c = PredictionChunkRow
    columns = [c.id, c.model, c.version, c.entries, c.columns, c.outputs]
    if inputs:
        columns += [c.inputs, c.table]
    for start in range(0, len(ids), _IN):
        for row in s.execute(select(*columns).where(c.id.in_(ids[start:start + _IN]))):
            entries = orjson.loads(row.entries)
            yield _Chunk(row.id, row.model, row.version, entries["request_ids"], entries["at"],
                         entries["rows"], entries["arms"], entries["tabular"],
                         None if row.columns is None else orjson.loads(row.columns),
                         orjson.loads(row.inputs) if inputs else None,
                         orjson.loads(row.outputs), row.table if inputs else None)


def _entries_chunk(model: str, version: str,
                   part: list[tuple[float, LogEntry]]) -> LogChunk:
    return LogChunk(model, version, [e.request_id for _, e in part], [at for at, _ in part],
                    [e.rows for _, e in part], [e.arm for _, e in part], None,
                    [JSON] * len(part), "[" + ",".join(e.inputs for _, e in part) + "]",
                    "[" + ",".join(e.outputs for _, e in part) + "]")


def _seconds(at: dt.datetime | float) -> float:
    return float(at) if isinstance(at, (int, float)) else as_utc(at).timestamp()


def _utc(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc)
