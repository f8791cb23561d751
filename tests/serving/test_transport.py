"""modelhost.serving.transport: the writes of one turn of the event loop leave in one call
to the real transport; a close sends them first; an abort drops them. Driven through
uvicorn's own httptools protocol with a recording transport, beside the plain protocol,
which writes a response in two calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from modelhost.serving.transport import CoalescingTransport, OneWriteProtocol


class Recording:
    """A transport that records every call that would send bytes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False
        self.paused = 0

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, lines: Any) -> None:
        self.calls.append(("writelines", b"".join(lines)))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append(("write_eof", b""))

    def abort(self) -> None:
        self.calls.append(("abort", b""))
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 5

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default)

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.paused -= 1

    def set_protocol(self, protocol: Any) -> None:
        pass


async def _turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_writes_of_one_turn_leave_in_one_call() -> None:
    async def scenario() -> None:
        inner = Recording()
        joined = CoalescingTransport(inner, asyncio.get_running_loop())
        joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
        joined.write(b"")
        joined.writelines([b"{", b"}"])
        assert inner.calls == [] and joined.get_write_buffer_size() == 5 + 21
        await _turn()
        assert inner.calls == [("writelines", b"HTTP/1.1 200 OK\r\n\r\n{}")]
        joined.write(b"chunk")  # a later turn: a call of its own, still one per turn
        await _turn()
        assert inner.calls[1:] == [("write", b"chunk")]
        assert joined.get_write_buffer_size() == 5
        joined.pause_reading()  # everything else is the wrapped transport's
        assert inner.paused == 1

    asyncio.run(scenario())


def test_a_close_sends_what_is_kept_first_and_an_abort_drops_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        inner = Recording()
        joined = CoalescingTransport(inner, loop)
        joined.write(b"last answer")
        joined.close()
        await _turn()  # the flush already scheduled finds nothing left
        assert inner.calls == [("write", b"last answer"), ("close", b"")]

        inner = Recording()
        joined = CoalescingTransport(inner, loop)
        joined.write(b"part")
        joined.write_eof()
        assert inner.calls == [("write", b"part"), ("write_eof", b"")]

        inner = Recording()
        joined = CoalescingTransport(inner, loop)
        joined.write(b"never")
        joined.abort()
        await _turn()
        assert inner.calls == [("abort", b"")]

        inner = Recording()
        joined = CoalescingTransport(inner, loop)
        joined.write(b"too late")
        inner.closing = True  # the connection went away before the loop's next turn
        await _turn()
        assert inner.calls == []

    asyncio.run(scenario())


def _serve_one_request(protocol_class: type[HttpToolsProtocol]
                       ) -> tuple[list[tuple[str, bytes]], int]:
    """One request through uvicorn's httptools protocol of ``protocol_class`` on a
    recording transport: the calls that sent bytes, and how many there were when the
    app returned."""
    inner = Recording()
    written_at_return: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"19")]})
        await send({"type": "http.response.body", "body": b'{"predictions":[0]}'})
        # What the app does after its answer (monitoring, metrics) must not delay it.
        written_at_return.append(len(inner.calls))

    async def scenario() -> list[tuple[str, bytes]]:
        config = uvicorn.Config(app, http=protocol_class, lifespan="off", access_log=False)
        config.load()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={},
                                  _loop=asyncio.get_running_loop())
        protocol.connection_made(inner)  # type: ignore[arg-type]
        protocol.data_received(b"POST /v1/models/m/predict HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 2\r\n\r\n{}")
        for _ in range(50):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return [call for call in inner.calls if call[0] != "close"]

    sent = asyncio.run(scenario())
    return sent, written_at_return[0]


@pytest.mark.parametrize(("protocol_class", "calls"),
                         [(HttpToolsProtocol, 2), (OneWriteProtocol, 1)])
def test_a_response_leaves_in_one_write_with_ours_and_two_without(
        protocol_class: type[HttpToolsProtocol], calls: int) -> None:
    sent, written_at_return = _serve_one_request(protocol_class)
    assert len(sent) == calls, sent
    assert written_at_return == calls  # the answer left before the app ended
    response = b"".join(data for _, data in sent)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b'\r\n\r\n{"predictions":[0]}')


def test_under_load_answers_leave_together_at_the_turn_end() -> None:
    """Two requests in progress at once: each answer still leaves in one write, and
    neither before the turn's end (after both apps' steps), when they leave together."""
    async def scenario() -> tuple[list[int], list[Recording]]:
        gate = asyncio.Event()
        transports: list[Recording] = []
        written_at_return: list[int] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await receive()
            await gate.wait()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"{}"})
            mine = transports[int(dict(scope["headers"])[b"x-conn"])]
            written_at_return.append(len(mine.calls))

        config = uvicorn.Config(app, http=OneWriteProtocol, lifespan="off", access_log=False)
        config.load()
        state, loop = ServerState(), asyncio.get_running_loop()
        protocols = []
        for conn in range(2):
            protocol = OneWriteProtocol(config=config, server_state=state, app_state={},
                                        _loop=loop)
            transports.append(Recording())
            protocol.connection_made(transports[-1])  # type: ignore[arg-type]
            protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Conn: %d\r\n\r\n" % conn)
            protocols.append(protocol)
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        for _ in range(50):
            await asyncio.sleep(0)
        for protocol in protocols:
            protocol.connection_lost(None)
        return written_at_return, transports

    written_at_return, transports = asyncio.run(scenario())
    assert written_at_return == [0, 0]
    for inner in transports:
        sent = [call for call in inner.calls if call[0] != "close"]
        assert len(sent) == 1 and sent[0][1].startswith(b"HTTP/1.1 200 OK\r\n"), sent
        assert sent[0][1].endswith(b"\r\n\r\n{}")
