"""Who is acting: the actor and request id that audit entries are written with.

Set once where a request or command enters (the server's auth middleware, the CLI) and
read by the store when it appends to the audit log in the same transaction as the change.
A context variable, so concurrent requests (and the threads FastAPI runs them in, which
copy the context) each see their own.
"""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """``name`` is e.g. ``key:ab12cd34ef56 (ci-deployer)``, ``cli:alice`` or ``local``."""

    name: str
    request_id: str | None = None


def _default() -> Actor:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in this environment
        user = "unknown"
    return Actor(f"local:{user}")


_current: ContextVar[Actor | None] = ContextVar("modelhost_actor", default=None)


def current_actor() -> Actor:
    return _current.get() or _default()


@contextlib.contextmanager
def acting_as(name: str, request_id: str | None = None) -> Iterator[Actor]:
    actor = Actor(name, request_id)
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def set_actor(name: str, request_id: str | None = None) -> None:
    """Set the actor for the rest of the current context (an ASGI request's task)."""
    _current.set(Actor(name, request_id))
