"""A deliberately dumb HTTP/1.1 client for hostile requests.

httpx (like every well-behaved client) normalises what it sends: it resolves ``..``
segments, percent-encodes non-ASCII and refuses control characters. A hostile client
does none of that, so this one writes the request line and headers byte for byte onto a
socket and only uses h11 to *read* the answer.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass

import h11

Header = tuple[str, "str | bytes"]


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: tuple[tuple[str, str], ...]  # lower-cased names, latin-1 values, in order
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    @property
    def text(self) -> str:
        """Headers and body as one text, for leak checks."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return head + "\n\n" + self.body.decode("utf-8", "replace")


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def request_bytes(method: str, target: str | bytes, headers: list[Header],
                  body: bytes = b"") -> bytes:
    """The exact bytes sent: the target and header values as given (UTF-8 for text),
    a Host header unless one is given, and a Content-Length for a body unless the
    headers already frame it."""
    names = {name.lower() for name, _ in headers}
    lines = [method.encode("ascii") + b" " + _bytes(target) + b" HTTP/1.1"]
    if "host" not in names:
        lines.append(b"Host: 127.0.0.1")
    lines += [name.encode("latin-1") + b": " + _bytes(value) for name, value in headers]
    if body and not names & {"content-length", "transfer-encoding"}:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send(port: int, method: str, target: str | bytes, headers: list[Header] | None = None,
         body: bytes = b"", *, timeout_s: float = 30.0) -> RawResponse:
    """Send one request on a fresh connection and read the whole answer.

    The server may answer (e.g. 413) and close before it has read the body; what it
    said is still read and returned.
    """
    data = request_bytes(method, target, list(headers or ()), body)
    reader = h11.Connection(h11.CLIENT)
    # Only h11's reading half is used: put it in the state "request sent" with a dummy
    # request of the same method (which decides whether a response has a body).
    reader.send(h11.Request(method=method, target="/", headers=[("Host", "x"),
                                                                 ("Content-Length", "0")]))
    reader.send(h11.EndOfMessage())
    status = 0
    response_headers: tuple[tuple[str, str], ...] = ()
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        # The server may have answered and closed early: then read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        while True:
            event = reader.next_event()
            if event is h11.NEED_DATA:
                try:
                    received = sock.recv(65536)
                except ConnectionResetError:
                    received = b""
                reader.receive_data(received)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                response_headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                                         for k, v in event.headers)
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    if not status:
        raise ConnectionError(f"no response to {method} {target!r}")
    return RawResponse(status, response_headers, b"".join(chunks))
