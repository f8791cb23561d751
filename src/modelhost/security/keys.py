"""API keys: created random, shown once, stored as a SHA-256 hash, checked in constant time.

A key reads ``mh_<id>_<secret>``: ``id`` (12 hex characters) finds the stored record,
``secret`` (43 URL-safe characters, 256 bits) is never stored. Keys carry that much
entropy, so a fast hash is enough: a slow password hash protects guessable secrets, and
these are not guessable.

Every failure (malformed, unknown id, wrong secret, expired, revoked) gives the same
:class:`~modelhost.errors.UnauthorizedError` after the same work: one database lookup by
id and one constant-time comparison against a hash (a fixed dummy when the id is
unknown).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from modelhost._utils import utcnow, validate_name
from modelhost.errors import InvalidInputError, UnauthorizedError
from modelhost.security.roles import Role, parse_role
from modelhost.store.keys import ApiKey, KeyStore

_FORMAT = re.compile(r"^mh_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"modelhost: no such key").hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # the whole key; shown once, never stored


@dataclass(frozen=True)
class Principal:
    """Who a request acts as."""

    key_id: str
    name: str
    role: Role
    models: tuple[str, ...] | None
    rate_limit: float | None

    @property
    def actor(self) -> str:
        return f"key:{self.key_id} ({self.name})"


def hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ApiKeys:
    """Create, list, revoke and authenticate keys.

    Args:
        store: the key records.
        cache_ttl_s: how long an authentication result (positive or negative) is reused;
            a revoked key stops working on every server within this time.
        cache_size: most results remembered.
    """

    def __init__(self, store: KeyStore, *, cache_ttl_s: float = 5.0,
                 cache_size: int = 10_000) -> None:
        self._store = store
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._used: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    # --- management ---------------------------------------------------------------

    def create(self, *, name: str, role: Role | str, models: Sequence[str] | None = None,
               expires_at: dt.datetime | None = None, rate_limit: float | None = None,
               created_by: str = "") -> CreatedKey:
        role = role if isinstance(role, Role) else parse_role(role)
        label = name.strip()
        if not label or len(label) > 64 or not label.isprintable():
            raise InvalidInputError("a key name must be 1-64 printable characters")
        if models is not None:
            models = [validate_name(m, "model") for m in models]
            if role is not Role.PREDICTOR:
                raise InvalidInputError("only predictor keys can be limited to models")
        if expires_at is not None and expires_at <= utcnow():
            raise InvalidInputError("the expiry must be in the future")
        if rate_limit is not None and not 0 < rate_limit <= 1_000_000:
            raise InvalidInputError("the rate limit must be between 0 and 1,000,000 per second")
        key_id = secrets.token_hex(6)
        token = f"mh_{key_id}_{secrets.token_urlsafe(32)}"
        record = self._store.insert(key_id=key_id, secret_hash=hash_secret(token), name=label,
                                    role=role.value, models=models, rate_limit=rate_limit,
                                    created_by=created_by or "unknown", expires_at=expires_at)
        return CreatedKey(record, token)

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        return self._store.list(include_revoked=include_revoked)

    def find(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key record and its stored secret hash (which signs console sessions), or
        None."""
        return self._store.find(key_id)

    def revoke(self, key_id: str) -> ApiKey:
        key = self._store.revoke(key_id)
        with self._lock:  # effective at once in this process
            self._cache.clear()
        return key

    # --- authentication -----------------------------------------------------------

    def authenticate(self, token: str | None) -> Principal:
        """The principal of a presented key; raises UnauthorizedError otherwise.

        Blocking (it may read the database): call it from a thread in async code, after
        :meth:`authenticate_cached` found nothing.
        """
        if not token:
            raise UnauthorizedError()
        digest = hash_secret(token)
        found = self._cached(digest)
        if found is _MISS:
            principal = self._lookup(token, digest)
            self._remember(digest, principal)
        else:
            principal = found  # type: ignore[assignment]
        if principal is None:
            raise UnauthorizedError()
        self._mark_used(principal.key_id)
        return principal

    def authenticate_cached(self, token: str) -> Principal | None:
        """The principal of a key accepted within the cache time, without I/O; None when
        only :meth:`authenticate` can tell (unknown to the cache, or refused)."""
        found = self._cached(hash_secret(token))
        if not isinstance(found, Principal):
            return None
        self._mark_used(found.key_id)
        return found

    def _cached(self, digest: str) -> object:
        """The remembered result for a key's hash: a principal, None (refused), or
        :data:`_MISS`."""
        with self._lock:
            hit = self._cache.get(digest)
            if hit is None:
                return _MISS
            at, principal = hit
            if time.monotonic() - at > self._ttl:
                del self._cache[digest]
                return _MISS
            return principal

    def _lookup(self, token: str, digest: str) -> Principal | None:
        match = _FORMAT.match(token)
        key_id = match.group(1) if match else "000000000000"
        found = self._store.find(key_id)
        stored_hash = found[1] if found is not None else _DUMMY_HASH
        same = hmac.compare_digest(digest, stored_hash)
        if found is None or not same or match is None:
            return None
        key = found[0]
        if not key.active(utcnow()):
            return None
        return Principal(key_id=key.id, name=key.name, role=Role(key.role), models=key.models,
                         rate_limit=key.rate_limit)

    def _remember(self, digest: str, principal: Principal | None) -> None:
        with self._lock:
            self._cache[digest] = (time.monotonic(), principal)
            self._cache.move_to_end(digest)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)

    def _mark_used(self, key_id: str) -> None:
        with self._lock:
            self._used[key_id] = utcnow()

    def flush_usage(self, *, every_s: float = 30.0, force: bool = False) -> None:
        """Write the keys' last-used times (at most every ``every_s``); blocking."""
        with self._lock:
            if not self._used or (not force and time.monotonic() - self._last_flush < every_s):
                return
            used, self._used = self._used, {}
            self._last_flush = time.monotonic()
        self._store.touch(used)


_MISS = object()
