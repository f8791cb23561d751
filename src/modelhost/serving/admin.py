"""Management routes for keys and the audit log (admin role when auth is on)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from fastapi import FastAPI, Query, Response
from pydantic import BaseModel, Field

from modelhost._actor import current_actor
from modelhost.errors import InvalidInputError
from modelhost.security import ApiKeys
from modelhost.store.audit import AuditStore


class KeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: str = Field(description="admin, deployer, predictor or viewer")
    models: list[str] | None = Field(default=None,
                                     description="predictor keys: the models they may use")
    expires_at: dt.datetime | None = None
    rate_limit: float | None = Field(default=None, description="requests per second")


def install(api: FastAPI, *, keys: ApiKeys | None, audit: AuditStore | None) -> None:
    if keys is not None:
        _keys_routes(api, keys)
    if audit is not None:
        _audit_routes(api, audit)


def _keys_routes(api: FastAPI, keys: ApiKeys) -> None:
    @api.get("/v1/keys", tags=["security"])
    async def list_keys(include_revoked: bool = False) -> list[dict[str, Any]]:
        found = await asyncio.to_thread(keys.list, include_revoked=include_revoked)
        return [k.to_dict() for k in found]

    @api.post("/v1/keys", tags=["security"], status_code=201)
    async def create_key(body: KeyRequest) -> dict[str, Any]:
        """The response holds the key itself; it is shown this once and never again."""
        expires = body.expires_at
        if expires is not None and expires.tzinfo is None:
            raise InvalidInputError("expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
        created = await asyncio.to_thread(
            keys.create, name=body.name, role=body.role, models=body.models,
            expires_at=expires, rate_limit=body.rate_limit, created_by=current_actor().name)
        return {**created.key.to_dict(), "key": created.secret}

    @api.delete("/v1/keys/{key_id}", tags=["security"], status_code=204)
    async def revoke_key(key_id: str) -> Response:
        await asyncio.to_thread(keys.revoke, key_id)
        return Response(status_code=204)


def _audit_routes(api: FastAPI, audit: AuditStore) -> None:
    @api.get("/v1/audit", tags=["security"])
    async def list_audit(limit: int = Query(100, ge=1, le=10_000),
                         action: str | None = None, target: str | None = None,
                         actor: str | None = None) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(audit.list, limit=limit, action=action,
                                          target=target, actor=actor)
        return [e.to_dict() for e in entries]

    @api.get("/v1/audit/verify", tags=["security"])
    async def verify_audit() -> dict[str, Any]:
        return (await asyncio.to_thread(audit.verify)).to_dict()
