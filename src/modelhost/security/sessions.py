"""Browser sessions of the web console, made from API keys.

A person signs in with an API key; the browser then holds a session token, never the key:
``<key id>.<expiry>.<signature>``, where the signature is an HMAC of the id and expiry
keyed with the server's console secret and the key's stored hash. So a session

- needs no session table: every worker and replica checks it against the key record
  they already share (and the secret they are given);
- ends when its key is revoked or expires (checked on every use), or at its own expiry;
- cannot be made from what the browser holds, nor from a copy of the database (which
  holds the key's hash but not the secret).

The CSRF token of a session is a second HMAC under the same key: a form holds it, and a
page of another site can neither read nor compute it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from modelhost._utils import utcnow
from modelhost.errors import UnauthorizedError
from modelhost.security.keys import ApiKeys, Principal
from modelhost.security.roles import Role

_TOKEN = re.compile(r"^([0-9a-f]{12})\.([0-9]{1,12})\.([0-9a-f]{64})$")


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who it acts as, until when, and its CSRF token."""

    principal: Principal
    token: str
    expires_at: dt.datetime
    csrf: str


class Sessions:
    """Issue and check console sessions.

    Args:
        keys: authenticates the key given at sign-in; its records' stored hashes sign
            the sessions, with ``secret``.
        secret: the server's console secret (the same on every replica that should
            accept the sessions; see :func:`load_or_create_secret`).
        ttl: how long a session lasts (at most until its key expires).
    """

    def __init__(self, keys: ApiKeys, *, secret: bytes,
                 ttl: dt.timedelta = dt.timedelta(hours=8)) -> None:
        if len(secret) < 16:
            raise ValueError("the console secret must have at least 16 bytes")
        self._keys = keys
        self._secret = secret
        self._ttl = ttl

    def sign_in(self, api_key: str) -> Session:
        """A new session for a valid key; raises UnauthorizedError otherwise."""
        principal = self._keys.authenticate(api_key.strip())
        found = self._keys.find(principal.key_id)
        if found is None:  # revoked and deleted between the two reads
            raise UnauthorizedError()
        key, stored_hash = found
        expires = utcnow() + self._ttl
        if key.expires_at is not None:
            expires = min(expires, key.expires_at)
        stamp = int(expires.timestamp())
        signature = _sign(self._secret, stored_hash, "session", principal.key_id, stamp)
        token = f"{principal.key_id}.{stamp}.{signature}"
        return Session(principal, token, expires,
                       _sign(self._secret, stored_hash, "csrf", principal.key_id, stamp))

    def check(self, token: str | None) -> Session:
        """The session of a token; raises UnauthorizedError when it is malformed, forged,
        expired, or its key is revoked or expired."""
        match = _TOKEN.fullmatch(token or "")
        if match is None:
            raise UnauthorizedError()
        key_id, stamp_text, signature = match.groups()
        stamp = int(stamp_text)
        now = utcnow()
        found = self._keys.find(key_id)
        if found is None:
            raise UnauthorizedError()
        key, stored_hash = found
        expected = _sign(self._secret, stored_hash, "session", key_id, stamp)
        if not hmac.compare_digest(signature, expected):
            raise UnauthorizedError()
        if stamp <= now.timestamp() or not key.active(now):
            raise UnauthorizedError()
        principal = Principal(key_id=key.id, name=key.name, role=Role(key.role),
                              models=key.models, rate_limit=key.rate_limit)
        return Session(principal, token or "",
                       dt.datetime.fromtimestamp(stamp, dt.timezone.utc),
                       _sign(self._secret, stored_hash, "csrf", key_id, stamp))


def csrf_matches(session: Session, presented: str | None) -> bool:
    """Whether a form's CSRF token is the session's (in constant time)."""
    return tokens_match(session.csrf, presented)


def tokens_match(expected: str, presented: str | None) -> bool:
    """Whether ``presented`` is ``expected``, in constant time, for any text (a form may
    post anything: compared as UTF-8 bytes, since ``compare_digest`` refuses non-ASCII
    text)."""
    return bool(presented) and hmac.compare_digest(expected.encode(),
                                                   (presented or "").encode())


def load_or_create_secret(path: Path) -> bytes:
    """The console secret kept in ``path``, made (32 random bytes, mode 0600) by the
    first process that needs it: every worker of a server, and every server sharing the
    folder, reads the same one. Replicas on other machines need the same secret given
    to them (``MODELHOST_CONSOLE_SECRET``)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(tmp, path)
    finally:  # never left behind, whatever failed
        tmp.unlink()
    return path.read_bytes()


def _sign(secret: bytes, stored_hash: str, purpose: str, key_id: str, stamp: int) -> str:
    key = hmac.new(secret, stored_hash.encode(), hashlib.sha256).digest()
    message = f"modelhost-console:{purpose}:{key_id}:{stamp}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()
