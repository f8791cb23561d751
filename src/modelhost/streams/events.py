"""Events in and results out, independent of the broker.

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

from modelhost.serving.v1 import parse_json, v1_fields


@dataclass(frozen=True, slots=True)
class Event:
    """One message read from a source, as the source gave it."""

    id: str  # where it is in the source: what the result's source_id says
    body: bytes  # the original bytes (a dead letter keeps them as they were)
    key: str | None = None  # the routing key, echoed in the result
    deliveries: int = 1  # how often the source has handed it out (1: the first time)


@dataclass(frozen=True, slots=True)
class Payload:
    """An event's rows, as the predictor takes them (records, or an object of columns:
    the predictor checks them as it checks a request's)."""

    inputs: Any
    params: Any
    single: bool  # one record: the result's prediction is a value, not a list


def parse(body: bytes) -> Payload:
    """The rows of an event: one record, or a v1 body read by the HTTP path's own
    parser (strict JSON, ``inputs`` and ``params`` only). Raises MalformedRequestError
    (not JSON) and InvalidInputError (JSON of neither shape)."""
    document = parse_json(body)
    if isinstance(document, dict) and "inputs" not in document:
        return Payload([document], None, single=True)
    inputs, params = v1_fields(document)
    return Payload(inputs, params, single=False)


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
