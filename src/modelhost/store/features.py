"""Versions of the feature definitions: appended, never edited, each with its audit
entry in the same transaction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from modelhost._actor import current_actor
from modelhost._utils import as_utc, utcnow
from modelhost.store import audit
from modelhost.store.database import Database
from modelhost.store.schema import FeatureRepoRow


@dataclass(frozen=True)
class StoredRepo:
    version: int
    digest: str
    definitions: str  # canonical JSON
    applied_by: str
    created_at: dt.datetime


class FeatureRepoStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def apply(self, definitions: str, digest: str) -> tuple[StoredRepo, bool]:
        """The new version holding ``definitions``, or the latest one if it holds them
        already (then False: nothing was written). Two applies at once: one wins, the
        other gets WriteConflictError."""
        with self._db.session(write=True) as s:
            latest = s.scalar(select(FeatureRepoRow)
                              .order_by(FeatureRepoRow.version.desc()).limit(1))
            if latest is not None and latest.digest == digest:
                return _stored(latest), False
            row = FeatureRepoRow(version=1 if latest is None else latest.version + 1,
                                 digest=digest, definitions=definitions,
                                 applied_by=current_actor().name, created_at=utcnow())
            s.add(row)
            s.flush()
            audit.append(s, "features.apply", f"features:{row.version}",
                         before={"version": latest.version} if latest else None,
                         after={"version": row.version, "digest": digest})
            return _stored(row), True

    def audit_materialized(self, version: int, summary: list[dict[str, object]]) -> None:
        """The audit entry of a materialization (the online store is not this database)."""
        with self._db.session(write=True) as s:
            audit.append(s, "features.materialize", f"features:{version}",
                         after={"views": summary})

    def latest(self) -> StoredRepo | None:
        with self._db.session() as s:
            row = s.scalar(select(FeatureRepoRow)
                           .order_by(FeatureRepoRow.version.desc()).limit(1))
            return _stored(row) if row is not None else None

    def get(self, version: int) -> StoredRepo | None:
        with self._db.session() as s:
            row = s.get(FeatureRepoRow, version)
            return _stored(row) if row is not None else None


def _stored(row: FeatureRepoRow) -> StoredRepo:
    return StoredRepo(row.version, row.digest, row.definitions, row.applied_by,
                      as_utc(row.created_at))
