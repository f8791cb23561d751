"""An online backup of a SQLite metadata database, consistent while servers write.

SQLite's backup API copies the database page by page from one read transaction, so the
copy is the database as it was at one instant, whatever the servers commit meanwhile
(in WAL mode writers never wait for it). The copy is written to a hidden file beside the
target, checked (``PRAGMA integrity_check``), flushed to disk, and only then linked under
its name: a crash leaves either no backup or a whole one, and an existing file is never
overwritten. PostgreSQL has its own tool for this (``pg_dump``).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from modelhost.errors import ConflictError, FileNotFoundInputError, InvalidInputError
from modelhost.store.database import Database

__all__ = ["Backup", "backup_sqlite"]


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    revision: str | None  # the schema's migration revision in the copy
    models: int
    versions: int

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "bytes": self.bytes, "revision": self.revision,
                "models": self.models, "versions": self.versions}


def backup_sqlite(db: Database, target: Path) -> Backup:
    """Copy ``db`` to ``target`` (a new file). Raises InvalidInputError for a database
    that is not SQLite (with the ``pg_dump`` way), ConflictError when ``target`` exists,
    FileNotFoundInputError when its folder does not."""
    if db.dialect != "sqlite":
        raise InvalidInputError(
            "modelhost db backup copies SQLite databases; back up PostgreSQL with its own "
            "tool: pg_dump --format=custom --file modelhost.dump DATABASE_URL (and "
            "pg_restore to restore)")
    target = target.expanduser()
    if target.exists() or target.is_symlink():
        raise ConflictError(f"{target} already exists; back up to a new file")
    folder = target.parent.resolve()
    if not folder.is_dir():
        raise FileNotFoundInputError(str(target.parent))
    partial = folder / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        raw = db.engine.raw_connection()
        try:
            source = raw.driver_connection
            if not isinstance(source, sqlite3.Connection):  # another SQLite driver
                raise InvalidInputError("modelhost db backup needs Python's sqlite3 driver")
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)
                problems = [row[0] for row in copy.execute("PRAGMA integrity_check")]
                if problems != ["ok"]:
                    raise InvalidInputError("the copy failed its integrity check: "
                                            + "; ".join(problems[:3]))
                revision = _one(copy, "SELECT version_num FROM alembic_version")
                models = _one(copy, "SELECT count(*) FROM models")
                versions = _one(copy, "SELECT count(*) FROM model_versions")
            finally:
                copy.close()
        finally:
            raw.close()
        with partial.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.link(partial, target)  # fails if the name was taken meanwhile: never overwrite
    except FileExistsError:
        raise ConflictError(f"{target} already exists; back up to a new file") from None
    finally:
        partial.unlink(missing_ok=True)
    return Backup(path=target.resolve(), bytes=target.stat().st_size,
                  revision=None if revision is None else str(revision),
                  models=_count(models), versions=_count(versions))


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0


def _one(conn: sqlite3.Connection, query: str) -> object:
    try:
        row = conn.execute(query).fetchone()
    except sqlite3.OperationalError:  # an empty database: no such table
        return None
    return None if row is None else row[0]
