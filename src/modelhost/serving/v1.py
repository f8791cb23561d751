"""Our own versioned prediction API (PRODUCT.md §3.1), as a body-in, reply-out handler."""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import Any

import orjson

from modelhost.entities import ModelVersion
from modelhost.errors import InvalidInputError, MalformedRequestError, UnsupportedMediaTypeError
from modelhost.serving.http import Reply
from modelhost.serving.predictor import Prediction, Predictor, Trace

_JSON = (b"content-type", b"application/json")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def parse_json(body: bytes) -> Any:
    """Parse JSON strictly: no NaN/Infinity literals, no numbers that overflow to
    infinity, nesting bounded by the parser (1024 levels)."""
    if not body:
        raise MalformedRequestError("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(f"the body is not valid JSON: {exc.msg}") from None


def _content_type(content_type: str | None) -> None:
    if content_type is not None and content_type.split(";")[0].strip().lower() not in (
            "application/json", ""):
        raise UnsupportedMediaTypeError(content_type.split(";")[0], ["application/json"])


def v1_fields(document: Any) -> tuple[Any, dict[str, Any] | None]:
    """The ``inputs`` and ``params`` of a parsed v1 body (a stream event's too); the
    rows themselves are the predictor's to check."""
    if not isinstance(document, dict) or "inputs" not in document:
        raise InvalidInputError('the body must be a JSON object with "inputs" (a list of '
                                'records or an object of columns) and optional "params"')
    unknown = set(document) - {"inputs", "params"}
    if unknown:
        raise InvalidInputError(f"unexpected field(s) {', '.join(sorted(unknown))}; "
                                'use "inputs" and "params"')
    return document["inputs"], document.get("params")


async def predict(predictor: Predictor, name: str, ref: str | None, body: bytes,
                  headers: dict[str, str], request_id: str, trace: Trace) -> Reply:
    _content_type(headers.get("content-type"))
    document = parse_json(body)
    # "return_features": echo the features a bound version looked up (see features.py).
    echo = document.pop("return_features", False) if isinstance(document, dict) else False
    if not isinstance(echo, bool):
        raise InvalidInputError('"return_features" must be true or false')
    payload, params = v1_fields(document)
    timeout_s = _timeout(headers)
    rows = predictor.check(payload, params)  # bad input never waits for a version
    pin = ref if ref is not None else (headers.get("x-model-version") or None)
    trace.resolved = resolved = await predictor.resolve(
        name, pin, headers.get("x-routing-key") or None)
    trace.prediction = result = await predictor.predict(resolved, payload, params,
                                                        timeout_s=timeout_s, rows=rows)
    return Reply(200, _body(result, request_id, echo),
                 response_headers(result.served.version, request_id))


def _body(result: Prediction, request_id: str, echo: bool = False) -> bytes:
    mv = result.served.version
    document: dict[str, Any] = {"model": mv.model, "version": mv.version,
                                "request_id": request_id, "predictions": result.predictions}
    if result.probabilities is not None:
        document["probabilities"] = result.probabilities
    if echo:
        document["features"] = result.features
    return orjson.dumps(document, option=_NUMPY)


def response_headers(mv: ModelVersion, request_id: str) -> list[tuple[bytes, bytes]]:
    headers = [_JSON, (b"x-model-version", mv.version.encode()),
               (b"x-request-id", request_id.encode())]
    if mv.sunset is not None:
        # RFC 9745 / RFC 8594: deprecated now, retired after the sunset day ends.
        end = dt.datetime.combine(mv.sunset, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
        headers += [(b"deprecation", b"true"),
                    (b"sunset", email.utils.format_datetime(end, usegmt=True).encode())]
    return headers


def _timeout(headers: dict[str, str]) -> float | None:
    raw = headers.get("x-request-timeout-ms")
    if raw is None:
        return None
    try:
        value = float(raw) / 1000.0
    except ValueError:
        raise InvalidInputError("X-Request-Timeout-Ms must be a number of milliseconds") from None
    if not 0 < value <= 600:
        raise InvalidInputError("X-Request-Timeout-Ms must be between 1 and 600000")
    return value
