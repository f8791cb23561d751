"""The audit log: append-only and hash-chained.

Every entry stores the SHA-256 of its own canonical content together with the previous
entry's hash, and sequence numbers have no gaps; editing a row, deleting one from the
middle, or reordering rows is therefore detected by :meth:`AuditStore.verify`. (Deleting
the *newest* rows leaves a valid, shorter chain: compare the head hash that ``verify``
reports with one recorded elsewhere to catch that.)

Entries are appended by :func:`append` inside the same transaction as the change they
describe, so a change is never committed without its entry, nor an entry without its
change. Appends are serialised: SQLite write transactions already are (BEGIN
IMMEDIATE), PostgreSQL takes a transaction-scoped advisory lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from modelhost._actor import Actor, current_actor
from modelhost._utils import as_utc, utcnow
from modelhost.store.database import Database
from modelhost.store.schema import AuditRow

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 0x6D68_6175  # "mhau": serialises appends to the chain

_BATCH = 1000  # rows read at a time by verify


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at.isoformat(), "actor": self.actor,
                "action": self.action, "target": self.target, "before": self.before,
                "after": self.after, "request_id": self.request_id,
                "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    head: str  # hash of the newest entry (GENESIS for an empty log)
    first_bad_seq: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "head": self.head,
                "first_bad_seq": self.first_bad_seq, "problem": self.problem}


def entry_hash(seq: int, at: dt.datetime, actor: str, action: str, target: str,
               before: Any, after: Any, request_id: str | None, prev_hash: str) -> str:
    """SHA-256 over a canonical JSON encoding of every field but the hash itself."""
    document = {"seq": seq, "at": _timestamp(at), "actor": actor, "action": action,
                "target": target, "before": before, "after": after,
                "request_id": request_id, "prev": prev_hash}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _timestamp(at: dt.datetime) -> str:
    # Microseconds in UTC: what both SQLite and PostgreSQL give back unchanged.
    return as_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append(s: Session, action: str, target: str, *, before: Mapping[str, Any] | None = None,
           after: Mapping[str, Any] | None = None, actor: Actor | None = None) -> AuditEntry:
    """Append one entry in the caller's (write) transaction."""
    who = actor or current_actor()
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = s.scalar(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1))
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS if last is None else last.hash
    at = utcnow()
    before_doc = _jsonable(before)
    after_doc = _jsonable(after)
    # What is stored is what is hashed: fields cut to their column sizes, and NUL (which
    # PostgreSQL cannot store, so a hostile path could otherwise keep its denial out of
    # the log) written as an escape.
    actor_text, action_text = _storable(who.name, 200), _storable(action, 64)
    target_text = _storable(target, 300)
    digest = entry_hash(seq, at, actor_text, action_text, target_text, before_doc, after_doc,
                        who.request_id, prev)
    row = AuditRow(seq=seq, at=at, actor=actor_text, action=action_text, target=target_text,
                   before=before_doc, after=after_doc, request_id=who.request_id,
                   prev_hash=prev, hash=digest)
    s.add(row)
    s.flush()
    return _entry(row)


def _storable(text_: str, size: int) -> str:
    return text_.replace("\x00", "\\x00")[:size]


def _jsonable(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    # Round-trip through JSON so that what is hashed is exactly what is stored.
    loaded: dict[str, Any] = _without_nul(json.loads(json.dumps(dict(value), default=str)))
    return loaded


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(seq=row.seq, at=as_utc(row.at), actor=row.actor, action=row.action,
                      target=row.target, before=row.before, after=row.after,
                      request_id=row.request_id, prev_hash=row.prev_hash, hash=row.hash)


class AuditStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, action: str, target: str, *, before: Mapping[str, Any] | None = None,
               after: Mapping[str, Any] | None = None) -> AuditEntry:
        """Append an entry on its own (e.g. a denied attempt, which changes nothing)."""
        with self._db.session(write=True) as s:
            return append(s, action, target, before=before, after=after)

    def list(self, *, limit: int = 100, action: str | None = None,
             target: str | None = None, actor: str | None = None) -> list[AuditEntry]:
        """Newest first."""
        query = select(AuditRow).order_by(AuditRow.seq.desc()).limit(max(1, min(limit, 10_000)))
        if action is not None:
            query = query.where(AuditRow.action == action)
        if target is not None:
            query = query.where(AuditRow.target == target)
        if actor is not None:
            query = query.where(AuditRow.actor == actor)
        with self._db.session() as s:
            return [_entry(row) for row in s.scalars(query)]

    def verify(self) -> VerifyResult:
        """Walk the whole chain, oldest first, and report the first inconsistency."""
        expected_seq, prev, count = 1, GENESIS, 0
        with self._db.session() as s:
            last_seq = 0
            while True:
                rows = list(s.scalars(select(AuditRow).where(AuditRow.seq > last_seq)
                                      .order_by(AuditRow.seq).limit(_BATCH)))
                if not rows:
                    break
                for row in rows:
                    problem = None
                    if row.seq != expected_seq:
                        problem = (f"entry {expected_seq} is missing (the next one is "
                                   f"{row.seq})")
                    elif row.prev_hash != prev:
                        problem = f"entry {row.seq} does not follow the entry before it"
                    elif row.hash != entry_hash(row.seq, row.at, row.actor, row.action,
                                                row.target, row.before, row.after,
                                                row.request_id, row.prev_hash):
                        problem = f"entry {row.seq} was modified after it was written"
                    if problem is not None:
                        return VerifyResult(False, count, prev, expected_seq, problem)
                    expected_seq, prev, count = row.seq + 1, row.hash, count + 1
                last_seq = rows[-1].seq
        return VerifyResult(True, count, prev)
