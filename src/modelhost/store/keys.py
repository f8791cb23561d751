"""API key records: only a hash of each secret is stored, next to its lookup id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from modelhost._utils import as_utc, utcnow
from modelhost.errors import NotFoundError
from modelhost.store import audit
from modelhost.store.database import Database
from modelhost.store.schema import ApiKeyRow


class KeyNotFoundError(NotFoundError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"API key {key_id!r} not found")


@dataclass(frozen=True)
class ApiKey:
    """A key as stored: everything but the secret (of which only a hash is kept)."""

    id: str
    name: str
    role: str
    models: tuple[str, ...] | None
    rate_limit: float | None
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def active(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_dict(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"id": self.id, "name": self.name, "role": self.role,
                "models": list(self.models) if self.models is not None else None,
                "rate_limit": self.rate_limit, "created_by": self.created_by,
                "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
                "last_used_at": iso(self.last_used_at), "revoked_at": iso(self.revoked_at)}


class KeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def insert(self, *, key_id: str, secret_hash: str, name: str, role: str,
               models: Sequence[str] | None, rate_limit: float | None, created_by: str,
               expires_at: dt.datetime | None) -> ApiKey:
        with self._db.session(write=True) as s:
            row = ApiKeyRow(id=key_id, secret_hash=secret_hash, name=name, role=role,
                            models=list(models) if models is not None else None,
                            rate_limit=rate_limit, created_by=created_by, created_at=utcnow(),
                            expires_at=expires_at)
            s.add(row)
            s.flush()
            key = _key(row)
            audit.append(s, "key.create", f"key:{key_id}",
                         after={k: v for k, v in key.to_dict().items() if k != "last_used_at"})
            return key

    def find(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its secret hash, or None."""
        with self._db.session() as s:
            row = s.get(ApiKeyRow, key_id)
            return None if row is None else (_key(row), row.secret_hash)

    def get(self, key_id: str) -> ApiKey:
        found = self.find(key_id)
        if found is None:
            raise KeyNotFoundError(key_id)
        return found[0]

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self._db.session() as s:
            return [_key(row) for row in s.scalars(query)]

    def revoke(self, key_id: str) -> ApiKey:
        with self._db.session(write=True) as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise KeyNotFoundError(key_id)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.flush()
                audit.append(s, "key.revoke", f"key:{key_id}", before={"revoked": False},
                             after={"revoked": True})
            return _key(row)

    def touch(self, used: Mapping[str, dt.datetime]) -> None:
        """Record when keys were last used (batched by the caller; not audited)."""
        if not used:
            return
        with self._db.session(write=True) as s:
            for row in s.scalars(select(ApiKeyRow).where(ApiKeyRow.id.in_(list(used)))):
                row.last_used_at = used[row.id]


def _key(row: ApiKeyRow) -> ApiKey:
    def opt(value: dt.datetime | None) -> dt.datetime | None:
        return as_utc(value) if value is not None else None

    return ApiKey(id=row.id, name=row.name, role=row.role,
                  models=tuple(row.models) if row.models is not None else None,
                  rate_limit=row.rate_limit, created_by=row.created_by,
                  created_at=as_utc(row.created_at), expires_at=opt(row.expires_at),
                  last_used_at=opt(row.last_used_at), revoked_at=opt(row.revoked_at))
