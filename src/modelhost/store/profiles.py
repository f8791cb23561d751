"""Reference profiles of versions, and the live profile windows that workers write.

A window row holds one worker's counts for one version over one minute or one hour, as
the bytes of a float64 vector (``stats.profile.Layout``). A worker rewrites its row as
the window fills (an upsert of the whole vector: idempotent, so a retried flush never
counts twice); the rows of all workers and replicas add up, which is all a query does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from modelhost._utils import as_utc, utcnow
from modelhost.entities import SemVer
from modelhost.errors import ModelNotFoundError, VersionNotFoundError
from modelhost.store import audit
from modelhost.store.database import Database, insert_for
from modelhost.store.schema import (
    ModelRow,
    ModelVersionRow,
    ProfileWindowRow,
    ReferenceProfileRow,
)

MINUTE_S = 60
HOUR_S = 3600


@dataclass(frozen=True, slots=True)
class StoredReference:
    model: str
    version: str
    digest: str
    source: str
    rows: int
    profile: dict[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class NewReference:
    """A reference profile to save (``profile``: ``stats.profile.Reference.to_dict()``)."""

    profile: dict[str, Any]
    digest: str
    source: str
    rows: int


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """One worker's counts for one window, to store (``counts``: float64 bytes)."""

    model: str
    version: str
    width_s: int
    start: dt.datetime
    worker: str
    digest: str
    counts: bytes


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- references -----------------------------------------------------------------

    def reference(self, model: str, version: str) -> StoredReference | None:
        """The version's reference profile, or None if it has none (the version must
        exist)."""
        with self._db.session() as s:
            row = _version_row(s, model, version)
            ref = s.get(ReferenceProfileRow, row.id)
            return _stored(model, version, ref) if ref is not None else None

    def attach_reference(self, model: str, version: str,
                         new: NewReference) -> StoredReference:
        """Save (or replace) a version's reference profile, audited."""
        with self._db.session(write=True) as s:
            row = _version_row(s, model, version)
            old = s.get(ReferenceProfileRow, row.id)
            before = {"digest": old.digest, "source": old.source} if old else None
            if old is not None:
                s.delete(old)
                s.flush()
            ref = new_reference_row(row.id, new)
            s.add(ref)
            s.flush()
            audit.append(s, "model.reference", f"{model}:{version}", before=before,
                         after={"digest": new.digest, "source": new.source,
                                "rows": new.rows})
            return _stored(model, version, ref)

    # --- live windows ---------------------------------------------------------------

    def write_windows(self, windows: Sequence[WindowCounts]) -> None:
        """Store workers' window counts in one transaction (replacing the same worker's
        earlier counts for the same window)."""
        if not windows:
            return
        now = utcnow()
        rows = [{"model": w.model, "version": w.version, "width_s": w.width_s,
                 "start": w.start.astimezone(dt.timezone.utc), "worker": w.worker,
                 "digest": w.digest,
                 "counts": w.counts, "updated_at": now} for w in windows]
        with self._db.session(write=True) as s:
            statement = insert_for(s, ProfileWindowRow)
            s.execute(statement.on_conflict_do_update(
                index_elements=["model", "version", "width_s", "start", "worker", "digest"],
                set_={"counts": statement.excluded.counts,
                      "updated_at": statement.excluded.updated_at}), rows)

    def windows(self, model: str, version: str, *, width_s: int, start: dt.datetime,
                end: dt.datetime) -> Iterator[tuple[dt.datetime, str, bytes]]:
        """(start, digest, counts) of every worker's window of ``width_s`` starting in
        [start, end), oldest first."""
        t = ProfileWindowRow
        # In UTC: SQLite compares the stored wall time, whatever zone it was written in.
        start, end = start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)
        with self._db.session() as s:
            for row in s.execute(select(t.start, t.digest, t.counts).where(
                    t.model == model, t.version == version, t.width_s == width_s,
                    t.start >= start, t.start < end).order_by(t.start)):
                yield as_utc(row.start), row.digest, row.counts

    def headers(self, *, width_s: int, start: dt.datetime, end: dt.datetime,
                size: int) -> Iterator[tuple[str, str, bytes]]:
        """(model, version, the first ``size`` bytes of the counts) of every model's
        windows of ``width_s`` starting in [start, end): what an overview of all models
        reads (their request and error counts) without the histograms."""
        t = ProfileWindowRow
        start, end = start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)
        with self._db.session() as s:
            for row in s.execute(select(t.model, t.version, func.substr(t.counts, 1, size))
                                 .where(t.width_s == width_s, t.start >= start,
                                        t.start < end)):
                yield row[0], row[1], bytes(row[2])

    def prune(self, *, minutes_before: dt.datetime, hours_before: dt.datetime) -> int:
        """Delete minute windows that started before ``minutes_before`` and hour windows
        before ``hours_before``; returns how many."""
        t = ProfileWindowRow
        with self._db.session(write=True) as s:
            deleted = 0
            for width, before in ((MINUTE_S, minutes_before), (HOUR_S, hours_before)):
                result: CursorResult[Any] = s.execute(  # type: ignore[assignment]
                    delete(t).where(t.width_s == width,
                                    t.start < before.astimezone(dt.timezone.utc)))
                deleted += result.rowcount
            return deleted


def new_reference_row(version_id: int, new: NewReference) -> ReferenceProfileRow:
    """The row of a reference profile (also written by a registration, in its own
    transaction)."""
    return ReferenceProfileRow(version_id=version_id, digest=new.digest, source=new.source,
                               rows=new.rows, profile=new.profile, created_at=utcnow())


def _stored(model: str, version: str, row: ReferenceProfileRow) -> StoredReference:
    return StoredReference(model=model, version=version, digest=row.digest,
                           source=row.source, rows=row.rows, profile=row.profile,
                           created_at=as_utc(row.created_at))


def _version_row(s: Session, model: str, version: str) -> ModelVersionRow:
    model_row = s.scalar(select(ModelRow).where(ModelRow.name == model))
    if model_row is None:
        raise ModelNotFoundError(model)
    number = SemVer.parse(version)
    row = s.scalar(select(ModelVersionRow).where(
        ModelVersionRow.model_id == model_row.id, ModelVersionRow.major == number.major,
        ModelVersionRow.minor == number.minor, ModelVersionRow.patch == number.patch))
    if row is None:
        raise VersionNotFoundError(model, version)
    return row
