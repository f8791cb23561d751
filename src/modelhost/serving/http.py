"""Raw ASGI plumbing for the prediction hot path: bounded body reading (also gzip),
request ids, and sending a complete response in two messages."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from modelhost._utils import REQUEST_ID
from modelhost.errors import MalformedRequestError, PayloadTooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]



@dataclass
class Reply:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers, lower-cased names; later duplicates win."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def request_id(headers: dict[str, str]) -> str:
    """The caller's X-Request-Id when it is sane, else a fresh one."""
    given = headers.get("x-request-id")
    return given if given and REQUEST_ID.match(given) else new_request_id()


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562) in hex: the time in milliseconds, then 74 random bits.
    Time-ordered ids land at the end of the prediction log's request-id index; random
    ones (uuid4) would each dirty a random page of it, which costs more the larger the
    index grows (``benchmarks/monitoring/RESULTS.md``)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & _UUID7_CLEAR | _UUID7_SET
    return f"{value:032x}"


_UUID7_CLEAR = ~(0xF << 76 | 0x3 << 62)  # the version and variant bits
_UUID7_SET = 0x7 << 76 | 0x2 << 62  # version 7, variant 0b10


async def read_body(receive: Receive, headers: dict[str, str], *, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes before or after gzip."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError("the request body", limit, "bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedRequestError("the client disconnected before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError("the request body", limit, "bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise MalformedRequestError(f"content encoding {encoding!r} is not supported; "
                                    "use gzip or none")
    return _gunzip(body, limit=limit)


def _gunzip(data: bytes, *, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise MalformedRequestError("the body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLargeError("the decompressed request body", limit, "bytes")
    if not inflater.eof:
        raise MalformedRequestError("the gzip body is truncated")
    return out


_NO_STORE = (b"cache-control", b"no-store")
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    _NO_STORE,
)
# Every answer but the documentation pages is data: nothing in it may run or load.
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_DOC_PAGES = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
DOCS_ASSETS = "/docs/assets/"
"""Where the documentation pages' scripts, styles and icon are served from."""
# The documentation pages load Swagger UI and ReDoc from this server only. Inline styles
# stay allowed (ReDoc writes its styles at run time; Swagger UI sets style attributes) and
# so do blob: workers (ReDoc's search); inline scripts only by the hash of each one.
_DOCS_POLICY = ("default-src 'none'; script-src 'self'{scripts}; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
                "connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; "
                "form-action 'self'; frame-ancestors 'none'")


CONSOLE = "/ui"
CONSOLE_ASSETS = "/ui/static/"
# The console loads its scripts and styles from this server only: no inline script, no
# inline style, no eval (htmx is configured not to need them), forms post here only.
_CONSOLE_CSP = (b"content-security-policy",
                b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
                b"data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
                b"frame-ancestors 'none'")


def docs_policy(inline_scripts: Iterable[str] = ()) -> tuple[bytes, bytes]:
    """The content security policy header of the documentation pages: this origin only,
    plus exactly the given inline scripts (allowed by their SHA-256)."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in inline_scripts)
    return b"content-security-policy", _DOCS_POLICY.format(scripts=hashes).encode()


def security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """Headers every response carries: no sniffing, no framing, no caching, and a
    deny-all content security policy. The documentation pages send their own policy
    (:func:`docs_policy`); their assets may be cached."""
    if path in _DOC_PAGES:
        return _SECURITY_HEADERS
    if path.startswith(DOCS_ASSETS):
        return (*(h for h in _SECURITY_HEADERS if h is not _NO_STORE), _CSP)
    if path == CONSOLE or path.startswith(CONSOLE + "/"):
        if path.startswith(CONSOLE_ASSETS):
            return (*(h for h in _SECURITY_HEADERS if h is not _NO_STORE), _CONSOLE_CSP)
        return (*_SECURITY_HEADERS, _CONSOLE_CSP)
    return (*_SECURITY_HEADERS, _CSP)


_REPLY_HEADERS = security_headers("/")


async def send_reply(send: Send, reply: Reply) -> None:
    headers = [(b"content-length", str(len(reply.body)).encode()), *reply.headers,
               *_REPLY_HEADERS]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
