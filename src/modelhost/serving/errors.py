"""The one table from modelhost errors to HTTP statuses, and the §3.6 error body."""

from __future__ import annotations

import orjson

from modelhost.errors import (
    ConflictError,
    DeadlineExceededError,
    ForbiddenError,
    HeadersTooLargeError,
    InvalidInputError,
    MalformedRequestError,
    ModelhostError,
    ModelNotReadyError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PredictionFailedError,
    RateLimitedError,
    StoreUnavailableError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    VersionSunsetError,
)

# First match wins, so subclasses come before their bases.
_STATUS: tuple[tuple[type[ModelhostError], int], ...] = (
    (MalformedRequestError, 400),
    (UnauthorizedError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (VersionSunsetError, 410),
    (PayloadTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (InvalidInputError, 422),
    (HeadersTooLargeError, 431),
    (RateLimitedError, 429),
    (OverloadedError, 503),
    (ModelNotReadyError, 503),
    (StoreUnavailableError, 503),
    (DeadlineExceededError, 504),
    (PredictionFailedError, 500),
    (ModelhostError, 500),
)

# 400 for an unreadable body also covers any error raised before the body was understood.
INTERNAL_ERROR_MESSAGE = "internal error; the request id identifies it in the server log"


def status_for(error: ModelhostError) -> int:
    return next(status for kind, status in _STATUS if isinstance(error, kind))


def retry_after(error: ModelhostError) -> float | None:
    """Seconds a client should wait before retrying, for the 503 family."""
    if isinstance(error, OverloadedError | ModelNotReadyError | RateLimitedError):
        return error.retry_after
    if isinstance(error, StoreUnavailableError):
        return 5.0
    return None


def error_headers(error: ModelhostError, request_id: str) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())]
    if isinstance(error, UnauthorizedError):
        headers.append((b"www-authenticate", b'Bearer realm="modelhost"'))
    wait = retry_after(error)
    if wait is not None:
        headers.append((b"retry-after", str(max(1, round(wait))).encode()))
    return headers


def error_body(error: ModelhostError, request_id: str) -> bytes:
    return orjson.dumps({"error": {**error.to_dict(), "request_id": request_id}})


def internal_error_body(request_id: str) -> bytes:
    return orjson.dumps({"error": {"code": "internal", "message": INTERNAL_ERROR_MESSAGE,
                                   "request_id": request_id}})
