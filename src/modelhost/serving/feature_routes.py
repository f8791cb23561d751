"""``/v1/features``: the feature definitions, their freshness and online values.

``viewer`` reads (the definitions, the freshness of each view, a service's online values
for some entities); ``deployer`` applies new definitions, as ``modelhost features apply``
does: checked as a whole, a new version only when they changed, refused (409) when they
would change what a staged or production version is served. :class:`Freshness` sets
the freshness gauges of ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from fastapi import FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from modelhost.errors import (
    InvalidInputError,
    MalformedRequestError,
    ModelhostError,
    NotFoundError,
)
from modelhost.features.definitions import repo_to_dict
from modelhost.features.service import Features
from modelhost.serving.metrics import Metrics

log = logging.getLogger(__name__)
_YAML = ("application/yaml", "application/x-yaml", "text/yaml")


class OnlineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entities: list[dict[str, Any]] = Field(
        min_length=1, max_length=1000,
        description="Each entity's join keys, e.g. [{\"customer_id\": 42}].")


def install(api: FastAPI, features: Features | None) -> None:
    def service() -> Features:
        if features is None:
            raise NotFoundError("the feature store is not available on this server")
        return features

    @api.get("/v1/features", tags=["features"])
    async def definitions(version: int | None = Query(default=None, ge=1)) -> dict[str, Any]:
        """The feature definitions (the latest version, or `?version=`)."""
        applied = await asyncio.to_thread(service().current, version)
        return {**applied.to_dict(), **repo_to_dict(applied.repo)}

    @api.post("/v1/features", tags=["features"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object"}},
                  "application/yaml": {"schema": {"type": "string"}}}}})
    async def apply(request: Request) -> Response:
        """Apply definitions (a JSON object, or YAML text with a YAML content type):
        201 with the new version, 200 when they are those of the latest already."""
        body = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in _YAML:
            definitions: Any = body.decode("utf-8", errors="replace")
        else:
            try:
                definitions = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise MalformedRequestError(f"the body is not valid JSON: {exc.msg}") from None
            if not isinstance(definitions, dict):
                raise InvalidInputError("the body is a JSON object with entities, "
                                        "feature_views and feature_services")
        applied = await asyncio.to_thread(service().apply, definitions)
        return Response(orjson.dumps(applied.to_dict()), 201 if applied.changed else 200,
                        media_type="application/json")

    @api.get("/v1/features/freshness", tags=["features"])
    async def freshness() -> dict[str, Any]:
        """Each view's last materialization: up to when, its newest event, its keys."""
        found = await asyncio.to_thread(service().freshness)
        return {"views": [f.to_dict() for f in found.values()]}

    @api.post("/v1/features/services/{name}/online", tags=["features"])
    async def online(name: str, body: OnlineRequest) -> dict[str, Any]:
        """A service's online values for some entities, as a bound model is served
        them: each row's values, and which were missing or stale."""
        rows = await asyncio.to_thread(service().get_online, name, body.entities)
        return {"service": name, "rows": [{"entity": e, **r.to_dict()}
                                          for e, r in zip(body.entities, rows, strict=True)]}


class Freshness:
    """Sets the feature views' freshness gauges when metrics are scraped, from the online
    store read at most every few seconds; a store that does not answer leaves them as
    they were (the metrics never fail for it)."""

    EVERY_S = 5.0

    def __init__(self, features: Features, metrics: Metrics) -> None:
        self._features = features
        self._metrics = metrics
        self._read_at = float("-inf")
        self._until: dict[str, float] = {}

    async def refresh(self) -> None:
        now = time.monotonic()
        if now - self._read_at >= self.EVERY_S:
            self._read_at = now
            try:
                found = await asyncio.to_thread(self._features.freshness)
            except ModelhostError as exc:
                log.warning("feature freshness not read: %s", exc.message)
            else:
                self._until = {v: f.materialized_until.timestamp() for v, f in found.items()}
        wall = time.time()
        self._metrics.publish_freshness({v: wall - t for v, t in self._until.items()})
