"""Events in and results out, independent of the broker (pure code).

An event's payload is one JSON record (one row of the v1 ``inputs``) or a v1 body with
several rows (``{"inputs": [...], "params": {...}}``). Its result carries the event's
``key``, its ``source_id`` (a Redis entry id, a Kafka ``partition:offset``, a NATS
sequence), the ``prediction`` (a list when the event held several rows), the
``probabilities`` when the model has them, the ``version`` that answered and the
``request_id``: what a consumer downstream needs to spot a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from modelhost.errors import InvalidInputError, MalformedRequestError


@dataclass(frozen=True, slots=True)
class Event:
    """One message read from a source, as the source gave it."""

    id: str  # where it is in the source: what the result's source_id says
    body: bytes  # the original bytes (a dead letter keeps them as they were)
    key: str | None = None  # the routing key, echoed in the result
    deliveries: int = 1  # how often the source has handed it out (1: the first time)


@dataclass(frozen=True, slots=True)
class Payload:
    """An event's rows, as the predictor takes them."""

    inputs: list[dict[str, Any]]
    params: dict[str, Any] | None
    single: bool  # one record: the result's prediction is a value, not a list


def parse(body: bytes) -> Payload:
    """The rows of an event. Raises MalformedRequestError (not JSON) and
    InvalidInputError (JSON that is neither a record nor a v1 body)."""
    if not body:
        raise MalformedRequestError("the event is empty; send a JSON record or a v1 body")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(f"the event is not valid JSON: {exc.msg}") from None
    if not isinstance(document, dict):
        raise InvalidInputError("an event is a JSON object: one record, or a v1 body "
                                '{"inputs": [...]}')
    if "inputs" not in document:
        return Payload([document], None, single=True)
    unknown = set(document) - {"inputs", "params"}
    if unknown:
        raise InvalidInputError(f"unexpected field(s) {', '.join(sorted(unknown))} in a v1 "
                                'body; use "inputs" and "params"')
    inputs, params = document["inputs"], document.get("params")
    if isinstance(inputs, dict):  # columns
        inputs = _records(inputs)
    if (not isinstance(inputs, list) or not inputs
            or not all(isinstance(r, dict) for r in inputs)):
        raise InvalidInputError('"inputs" must be a non-empty list of records or an object '
                                "of columns")
    if params is not None and not isinstance(params, dict):
        raise InvalidInputError('"params" must be a JSON object')
    return Payload(inputs, params, single=False)


def _records(columns: dict[str, Any]) -> list[dict[str, Any]]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise InvalidInputError('the columns of "inputs" must be lists of one length')
    n = lengths.pop()
    return [{c: v[i] for c, v in columns.items()} for i in range(n)]


def result_fields(event: Event, payload: Payload, *, version: str, request_id: str,
                  predictions: Any, probabilities: Any) -> dict[str, str]:
    """The fields of the result entry of a scored event (values as text, JSON where
    they are structured)."""
    predicted = _jsonable(predictions)
    proba = _jsonable(probabilities) if probabilities is not None else None
    if payload.single:
        predicted = predicted[0]
        proba = proba[0] if proba is not None else None
    fields = {"key": event.key or "", "source_id": event.id,
              "prediction": orjson.dumps(predicted).decode(), "version": version,
              "request_id": request_id}
    if proba is not None:
        fields["probabilities"] = orjson.dumps(proba).decode()
    return fields


def dead_letter_fields(event: Event, reason: str) -> dict[str, bytes | str]:
    """The fields of a dead letter: the original bytes, untouched, and why."""
    return {"body": event.body, "key": event.key or "", "source_id": event.id,
            "reason": reason, "deliveries": str(event.deliveries)}


def _jsonable(values: Any) -> list[Any]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return list(values)


def message(fields: Mapping[str, bytes | str]) -> tuple[str | None, bytes, dict[str, str]]:
    """A result or dead letter as a message of a broker that carries one value per
    message (Kafka, NATS): (key, value, headers). A result's value is the JSON object of
    its fields; a dead letter's is the event's original bytes, with the other fields as
    headers."""
    key = str(fields.get("key") or "") or None
    body = fields.get("body")
    if isinstance(body, bytes):
        headers = {k: _header(v) for k, v in fields.items() if k != "body"}
        return key, body, headers
    value = orjson.dumps({k: v.decode() if isinstance(v, bytes) else v
                          for k, v in fields.items()})
    return key, value, {"key": key} if key else {}


def _header(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return " ".join(text.split())  # a header holds one line
