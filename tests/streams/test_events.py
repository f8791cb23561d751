"""Events in, results out: pure code, no broker."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelhost.errors import InvalidInputError, MalformedRequestError
from modelhost.streams import dead_letter_uri, open_source
from modelhost.streams.events import Event, dead_letter_fields, parse, result_fields
from modelhost.streams.redis_streams import RedisStream


def test_a_record_is_one_row_and_a_v1_body_is_several() -> None:
    one = parse(b'{"x": 1.5, "kind": "a"}')
    assert (one.inputs, one.params, one.single) == ([{"x": 1.5, "kind": "a"}], None, True)
    many = parse(b'{"inputs": [{"x": 1}, {"x": 2}], "params": {"t": 0.3}}')
    assert (many.inputs, many.params, many.single) == ([{"x": 1}, {"x": 2}], {"t": 0.3},
                                                       False)
    columns = parse(b'{"inputs": {"x": [1, 2], "y": ["a", "b"]}}')  # as the HTTP path
    assert (columns.inputs, columns.single) == ({"x": [1, 2], "y": ["a", "b"]}, False)


@pytest.mark.parametrize(("body", "error", "words"), [
    (b"", MalformedRequestError, "empty"),
    (b"not json", MalformedRequestError, "not valid JSON"),
    (b'{"x": NaN}', MalformedRequestError, "not valid JSON"),
    (b"[1, 2]", InvalidInputError, "JSON object"),
    (b'{"inputs": [{"x": 1}], "extra": 1}', InvalidInputError, "extra"),
])
def test_what_cannot_be_rows_is_refused_with_the_reason(body: bytes, error: type,
                                                        words: str) -> None:
    with pytest.raises(error, match=words):
        parse(body)


def test_a_result_names_its_event_version_and_request() -> None:
    event = Event("1700000000000-3", b'{"x": 1}', key="user-7")
    one = result_fields(event, parse(event.body), version="1.2.0", request_id="abc",
                        predictions=np.array([2]), probabilities=np.array([[0.1, 0.9]]))
    assert one == {"key": "user-7", "source_id": "1700000000000-3", "prediction": "2",
                   "version": "1.2.0", "request_id": "abc", "probabilities": "[0.1,0.9]"}
    many = result_fields(Event("5-0", b""), parse(b'{"inputs": [{"x": 1}, {"x": 2}]}'),
                         version="1.0.0", request_id="r", predictions=["a", "b"],
                         probabilities=None)
    assert orjson.loads(many["prediction"]) == ["a", "b"] and "probabilities" not in many
    assert many["key"] == ""


def test_a_dead_letter_keeps_the_bytes_as_they_came() -> None:
    body = b"\xff\xfe not even utf-8"
    fields = dead_letter_fields(Event("9-1", body, "k", deliveries=4), "why")
    assert fields == {"body": body, "key": "k", "source_id": "9-1", "reason": "why",
                      "deliveries": "4"}


def test_redis_stream_uris() -> None:
    where = RedisStream.parse("redis://cache:6380/events%2Fin?db=2")
    assert (where.url, where.stream) == ("redis://cache:6380/2", "events/in")
    assert RedisStream.parse("rediss://user:pw@h/s").url == "rediss://user:pw@h/0"
    for bad in ("kafka://h/t", "redis://h", "redis:///s", "redis://h/s?db=x"):
        with pytest.raises(InvalidInputError):
            RedisStream.parse(bad)
    assert dead_letter_uri("redis://h:1/in") == "redis://h:1/in-dead"
    assert dead_letter_uri("redis://h:1/in?db=3") == "redis://h:1/in-dead?db=3"


def test_nats_subject_uris_and_messages() -> None:
    from modelhost.streams.events import message
    from modelhost.streams.nats_streams import NatsSubject

    where = NatsSubject.parse("nats://127.0.0.1:4222/orders.scored")
    assert (where.url, where.subject) == ("nats://127.0.0.1:4222", "orders.scored")
    for bad in ("nats://h:1/a.*", "nats://h:1/a.>", "nats://h:1/", "redis://h/s"):
        with pytest.raises(InvalidInputError):
            NatsSubject.parse(bad)
    assert dead_letter_uri("nats://h:4222/orders") == "nats://h:4222/orders.dead"
    key, value, headers = message({"key": "k1", "source_id": "7", "prediction": "1"})
    assert (key, orjson.loads(value), headers) == (
        "k1", {"key": "k1", "source_id": "7", "prediction": "1"}, {"key": "k1"})
    key, value, headers = message(dead_letter_fields(Event("8", b"\xff", None), "a\nb"))
    assert (key, value) == (None, b"\xff")
    assert headers == {"key": "", "source_id": "8", "reason": "a b", "deliveries": "1"}


def test_kafka_topic_uris() -> None:
    from modelhost.streams.kafka_streams import KafkaTopic

    where = KafkaTopic.parse("kafka://b1:9092,b2:9092/orders")
    assert (where.servers, where.topic) == ("b1:9092,b2:9092", "orders")
    for bad in ("kafka://b1:9092/", "kafka:///t", "kafka://b/a/b", "nats://b/t"):
        with pytest.raises(InvalidInputError):
            KafkaTopic.parse(bad)
    assert dead_letter_uri("kafka://b:9092/orders") == "kafka://b:9092/orders-dead"


def test_a_streams_label_never_holds_credentials() -> None:
    from modelhost.streams.uris import describe

    assert describe("redis://user:secret@cache:6379/events?db=2") == "redis://cache:6379/events"
    assert describe("rediss://:pw@cache/events") == "rediss://cache/events"
    assert describe("kafka://b1:9092,b2:9092/orders") == "kafka://b1:9092,b2:9092/orders"
    assert describe("nats://127.0.0.1:4222/a.b") == "nats://127.0.0.1:4222/a.b"
    for bad in ("redis://:secret@h", "nats://u:secret@h:1/a.*", "mqtt://u:secret@h/t"):
        with pytest.raises(InvalidInputError) as refused:
            open_source(bad, group="g", consumer="c")
        assert "secret" not in str(refused.value)
