"""One gate in front of every route: authentication, roles, rate limits, the actor.

:func:`permission_for` maps every method and path of every protocol to the one
permission it needs (or none, for liveness and readiness probes); :class:`Guard` checks
the presented key against it. Unknown paths need ``read``, so that without a key even a
404 says nothing about what exists.

Keys are read from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from modelhost._actor import acting_as, set_actor
from modelhost.errors import ForbiddenError, ModelhostError, RateLimitedError, UnauthorizedError
from modelhost.security import PRIVILEGED, ApiKeys, Permission, Principal, RateLimiter, allows
from modelhost.serving.http import DOCS_ASSETS
from modelhost.store.audit import AuditStore

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready",
                        "/ping", "/health", "/version", "/v2"})
"""Liveness and readiness probes: answered without a key."""
DOCS_PATHS = frozenset({"/", "/docs", "/redoc", "/docs/oauth2-redirect", "/openapi.json"})
"""The API documentation (and the root, which sends a browser there): with its assets
under ``/docs/assets/``, what a ``read`` key may see, like any other description of the
routes."""
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Need:
    """What a route needs: any one of ``permissions``, for ``model`` when it names one."""

    permissions: frozenset[Permission]
    model: str | None = None


def permission_for(method: str, path: str, *, pinned_model: str | None = None,
                   public_metrics: bool = False) -> Need | None:
    """The permission a request needs; None for the open probes."""
    # Empty segments collapse ("//v1//keys" is /v1/keys here), so that no spelling of
    # a path needs less than its canonical form.
    parts = [p for p in path.split("/") if p]
    path = "/" + "/".join(parts)
    if path in OPEN_PATHS or (path == "/metrics" and public_metrics):
        return None
    if path == "/metrics":
        return Need(frozenset({Permission.METRICS}))
    if method in ("GET", "HEAD") and (path in DOCS_PATHS or path.startswith(DOCS_ASSETS)):
        return Need(frozenset({Permission.READ}))
    if parts[:2] == ["v1", "keys"] or parts[:2] == ["v1", "audit"]:
        return Need(frozenset({Permission.ADMIN}))
    if method == "POST" and path == "/invocations":
        return Need(frozenset({Permission.PREDICT}), pinned_model)
    if method == "POST" and path == "/v1/feedback":
        return Need(frozenset({Permission.PREDICT}))
    if len(parts) >= 3 and parts[0] in ("v1", "v2") and parts[1] == "models":
        model, action = parts[2], parts[-1]
        if method == "POST" and len(parts) in (4, 6) and action in ("predict", "infer",
                                                                    "invocations"):
            return Need(frozenset({Permission.PREDICT}), model)
        if parts[0] == "v2" and method in ("GET", "HEAD"):
            # Model metadata and readiness: what a predicting client asks first.
            return Need(frozenset({Permission.PREDICT, Permission.READ}), model)
    if method in _WRITE_METHODS:
        return Need(frozenset({Permission.DEPLOY}))
    return Need(frozenset({Permission.READ}))


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value:
            return value.decode("latin-1").strip()
    return None


class Guard:
    """Checks one request; raises Unauthorized/Forbidden/RateLimited errors.

    Args:
        keys: the key service (authentication).
        audit: where denied attempts at privileged routes are written; None skips that.
        limiter: per-key rate limits.
        default_rate: requests per second for keys without their own limit; None means
            unlimited.
        pinned_model: the model of ``serve --model`` (for ``/invocations``).
        public_metrics: serve ``/metrics`` without a key.
    """

    def __init__(self, keys: ApiKeys, *, audit: AuditStore | None, limiter: RateLimiter,
                 default_rate: float | None = None, pinned_model: str | None = None,
                 public_metrics: bool = False) -> None:
        self._keys = keys
        self._audit = audit
        self._limiter = limiter
        self._default_rate = default_rate
        self._pinned = pinned_model
        self._public_metrics = public_metrics

    async def check(self, method: str, path: str, headers: list[tuple[bytes, bytes]],
                    request_id: str | None) -> Principal | None:
        need = permission_for(method, path, pinned_model=self._pinned,
                              public_metrics=self._public_metrics)
        if need is None:
            return None
        token = presented_key(headers)
        try:
            principal = await self._authenticate(token)
        except UnauthorizedError:
            await self._deny(need, "anonymous", method, path, request_id, "no valid key")
            raise
        if not any(allows(principal.role, p, model=need.model, models=principal.models)
                   for p in need.permissions):
            await self._deny(need, principal.actor, method, path, request_id,
                             f"role {principal.role.value}")
            what = (f"model {need.model!r}" if need.model and principal.models is not None
                    and Permission.PREDICT in need.permissions else "this operation")
            raise ForbiddenError(f"the {principal.role.value} role does not allow {what}")
        rate = principal.rate_limit or self._default_rate
        if rate:
            wait = await self._limiter.check(principal.key_id, rate)
            if wait > 0:
                raise RateLimitedError(wait)
        set_actor(principal.actor, request_id)
        return principal

    async def _authenticate(self, token: str | None) -> Principal:
        principal = self._keys.authenticate_cached(token) if token else None
        if principal is not None:
            return principal
        return await asyncio.to_thread(self._authenticate_blocking, token)

    def _authenticate_blocking(self, token: str | None) -> Principal:
        principal = self._keys.authenticate(token)
        try:
            self._keys.flush_usage()
        except ModelhostError:  # last-used times are best effort
            log.debug("could not record key usage", exc_info=True)
        return principal

    async def _deny(self, need: Need, actor: str, method: str, path: str,
                    request_id: str | None, why: str) -> None:
        audit = self._audit
        if audit is None or not (need.permissions & PRIVILEGED):
            return

        def record() -> None:
            with acting_as(actor, request_id):
                audit.record("access.denied", f"{method} {path}"[:300],
                             after={"needed": sorted(p.value for p in need.permissions),
                                    "reason": why})

        try:
            await asyncio.to_thread(record)
        except ModelhostError:  # the denial stands even if the log cannot be written
            log.warning("could not write a denied attempt to the audit log")
