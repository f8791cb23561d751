"""One gate in front of every route: authentication, roles, rate limits, the actor.

:class:`Guard` checks the presented key against the permission of the request's
:class:`~modelhost.serving.routes.Route` (none for liveness and readiness probes). A path
that names no route needs ``read`` (``deploy`` for a write method), so that without a key
even a 404 says nothing about what exists.

Keys are read from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

import asyncio
import logging

from modelhost._actor import acting_as, set_actor
from modelhost.errors import ForbiddenError, ModelhostError, RateLimitedError, UnauthorizedError
from modelhost.security import PRIVILEGED, ApiKeys, Permission, Principal, RateLimiter, allows
from modelhost.serving.routes import Action, Route
from modelhost.store.audit import AuditStore

log = logging.getLogger(__name__)

# The ASGI scope key under which a model-limited key's models reach the routes.
MODELS_SCOPE_KEY = "modelhost.models"


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
    """

    def __init__(self, keys: ApiKeys, *, audit: AuditStore | None, limiter: RateLimiter,
                 default_rate: float | None = None) -> None:
        self._keys = keys
        self._audit = audit
        self._limiter = limiter
        self._default_rate = default_rate

    async def check(self, route: Route, headers: list[tuple[bytes, bytes]],
                    request_id: str | None, *, method: str, path: str) -> Principal | None:
        """The principal allowed ``route``; None for an open route.

        ``method`` and ``path`` are what the audit log records of a denied attempt.
        """
        if route.is_open:
            return None
        token = presented_key(headers)
        try:
            principal = await self._authenticate(token)
        except UnauthorizedError:
            await self._deny(route, "anonymous", method, path, request_id, "no valid key")
            raise
        # Feedback names no model in its path: a key limited to some models may send it,
        # and the route only accepts labels for those models' requests (MODELS_SCOPE_KEY).
        limited_feedback = (route.action is Action.FEEDBACK and principal.models is not None
                            and allows(principal.role, Permission.PREDICT))
        if not limited_feedback and not any(
                allows(principal.role, p, model=route.model, models=principal.models)
                for p in route.permissions):
            await self._deny(route, principal.actor, method, path, request_id,
                             f"role {principal.role.value}")
            what = (f"model {route.model!r}" if route.model and principal.models is not None
                    and Permission.PREDICT in route.permissions else "this operation")
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

    async def _deny(self, route: Route, actor: str, method: str, path: str,
                    request_id: str | None, why: str) -> None:
        audit = self._audit
        if audit is None or not (route.permissions & PRIVILEGED):
            return

        def record() -> None:
            with acting_as(actor, request_id):
                audit.record("access.denied", f"{method} {path}"[:300],
                             after={"needed": sorted(p.value for p in route.permissions),
                                    "reason": why})

        try:
            await asyncio.to_thread(record)
        except ModelhostError:  # the denial stands even if the log cannot be written
            log.warning("could not write a denied attempt to the audit log")
