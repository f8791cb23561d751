"""The online store in a SQLite file: one key-value table, read by primary key.

It is a cache of the offline sources, rebuilt by ``modelhost features materialize``, so
it lives in its own file (never locking the registry's database) and is created on first
use rather than migrated. Python's own ``sqlite3`` reads it: a lookup by primary key costs
microseconds, and an ORM would only add to them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from modelhost.errors import StoreUnavailableError
from modelhost.features.online import Freshness, OnlineStore, Stored

# A rowid table with a unique index, not a WITHOUT ROWID table keyed by (view, key): its
# rows (the values of 20 features are ~450 bytes) are too large for one (SQLite's advice
# is under a twentieth of a page), and a million of them were written 2x slower.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feature_rows (
    view TEXT NOT NULL, entity_key TEXT NOT NULL, event_ts REAL NOT NULL,
    feature_values TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS feature_rows_key ON feature_rows (view, entity_key);
CREATE TABLE IF NOT EXISTS feature_freshness (view TEXT PRIMARY KEY, record BLOB NOT NULL);
"""
_UPSERT = """
INSERT INTO feature_rows (view, entity_key, event_ts, feature_values) VALUES (?, ?, ?, ?)
ON CONFLICT (view, entity_key) DO UPDATE
SET event_ts = excluded.event_ts, feature_values = excluded.feature_values
WHERE excluded.event_ts >= feature_rows.event_ts
"""
_CHUNK = 400  # pairs per SELECT: two parameters each, under SQLite's limit of 999


class SQLiteOnlineStore(OnlineStore):
    def __init__(self, path: Path) -> None:
        self.where = "the SQLite online store"
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by threads, guarded by a lock: reads are microseconds.
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30.0,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: the key index, hot
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(self.where, type(exc).__name__) from None

    def write(self, view: str, rows: Sequence[tuple[str, float, str | bytes]]) -> None:
        with self._lock, self._transaction():
            self._db.executemany(_UPSERT, [(view, k, ts, v) for k, ts, v in rows])

    def read(self, lookups: Sequence[tuple[str, str]]) -> list[Stored | None]:
        found: dict[tuple[str, str], Stored] = {}
        with self._lock:
            try:
                for start in range(0, len(lookups), _CHUNK):
                    chunk = lookups[start:start + _CHUNK]
                    if len(chunk) == 1:
                        sql = ("SELECT view, entity_key, event_ts, feature_values FROM "
                               "feature_rows WHERE view = ? AND entity_key = ?")
                    else:
                        marks = ",".join(["(?, ?)"] * len(chunk))  # placeholders only
                        sql = ("SELECT view, entity_key, event_ts, feature_values FROM "  # noqa: S608
                               f"feature_rows WHERE (view, entity_key) IN (VALUES {marks})")
                    params = [p for pair in chunk for p in pair]
                    for view, key, ts, values in self._db.execute(sql, params):
                        found[(view, key)] = (ts, values)
            except sqlite3.Error as exc:
                raise StoreUnavailableError(self.where, type(exc).__name__) from None
        return [found.get(pair) for pair in lookups]

    def record(self, freshness: Freshness) -> None:
        import orjson

        with self._lock, self._transaction():
            self._db.execute("INSERT INTO feature_freshness (view, record) VALUES (?, ?) "
                             "ON CONFLICT (view) DO UPDATE SET record = excluded.record",
                             (freshness.view, orjson.dumps(freshness.to_dict())))

    def freshness(self) -> dict[str, Freshness]:
        with self._lock:
            rows = self._db.execute("SELECT view, record FROM feature_freshness").fetchall()
        return {view: Freshness.from_json(record) for view, record in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self.where)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error (then StoreUnavailableError
    for a database error)."""

    def __init__(self, db: sqlite3.Connection, where: str) -> None:
        self._db = db
        self._where = where

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(self._where, type(exc).__name__) from None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self._db.execute("COMMIT")
            return
        self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreUnavailableError(self._where, type(exc).__name__) from None
