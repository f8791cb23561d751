"""In-memory ASGI requests for the in-process benchmarks: the app is called directly,
without a socket or wrk, by any number of concurrent clients in one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


def post_scope(path: str, body: bytes, *,
               headers: Sequence[tuple[bytes, bytes]] = ()) -> dict[str, Any]:
    """The ASGI scope of a JSON POST of ``body`` to ``path`` (a new dict each call: the
    app may write to it)."""
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "",
            "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()), *headers],
            "client": ("127.0.0.1", 1234), "server": ("bench", 80)}


class Replies:
    """``receive`` hands every request ``body`` whole; ``send`` keeps each answer's
    status, in order."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.statuses: list[int] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self._body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


async def clients(app: Any, scopes: list[dict[str, Any]], replies: Replies,
                  concurrency: int) -> None:
    """Send ``scopes`` through ``app`` from ``concurrency`` clients at once, each client
    sending its share one request after the other (as wrk's connections do)."""
    async def client(mine: list[dict[str, Any]]) -> None:
        for scope in mine:
            await app(scope, replies.receive, replies.send)

    await asyncio.gather(*(client(scopes[i::concurrency]) for i in range(concurrency)))
