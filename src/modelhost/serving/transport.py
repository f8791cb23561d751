"""One write per response: uvicorn's httptools protocol over a transport that keeps a
response's writes until it is complete.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start`` and the body when it sends ``http.response.body``, and uvloop's
transport sends each write at once: two ``write`` system calls per answer, and the client
woken twice, once for the headers alone. For a small prediction the second write and
wake-up are a large share of the whole request (measured through the server, in
``benchmarks/serving/RESULTS-transport.md``). :class:`CoalescingTransport` keeps what is
written and hands it to the real transport in one call, at the latest at the loop's next
turn. A close sends what is kept first.

When :class:`OneWriteProtocol` learns that a response is complete, it sends it at once if
it was the worker's only request in progress: a lone client then gets its answer ahead of
whatever the app does after answering (its monitoring and metrics), as before. Under load
the complete answers wait for the turn's end and leave together, after the worker's
Python work of that turn: the clients, woken by each answer, then interrupt that work
less often (context switches per request 1.1 -> 0.45 through the serving benchmark).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingTransport", "OneWriteProtocol"]


class CoalescingTransport:
    """Wraps a write transport: ``write`` and ``writelines`` are kept until :meth:`flush`
    (at the latest at the loop's next turn) and then written in one call; ``close`` and
    ``write_eof`` send what is kept first, ``abort`` drops it. Everything else is the
    wrapped transport's."""

    __slots__ = ("_kept", "_loop", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._kept: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._kept:
            self._loop.call_soon(self.flush)
        self._kept.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Write what is kept now (at a response's end, before a close, and at the loop's
        next turn after a write)."""
        kept = self._kept
        if not kept:
            return
        self._kept = []
        if self._transport.is_closing():  # aborted or lost meanwhile: nobody to send to
            return
        if len(kept) == 1:
            self._transport.write(kept[0])
        else:
            self._transport.writelines(kept)

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size()) + sum(map(len, self._kept))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._kept = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`CoalescingTransport`
    (``modelhost serve`` passes it as uvicorn's ``http`` protocol). It relies on two
    details of uvicorn's protocol, checked by ``tests/serving/test_transport.py``:
    ``on_response_complete`` is called right after a response's last write, and
    ``tasks`` holds the worker's requests in progress."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._joined = CoalescingTransport(transport, self.loop)
        super().connection_made(cast(asyncio.Transport, self._joined))

    def on_response_complete(self) -> None:
        # Called by uvicorn right after a response's last write. The answering task is
        # still among the worker's tasks: alone, it is sent now; with others in progress
        # it leaves with theirs at the turn's end (see the module's docstring).
        if len(self.tasks) <= 1:
            self._joined.flush()
        super().on_response_complete()
