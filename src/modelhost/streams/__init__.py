"""Stream inference: score the events of a stream with the deployed version and write
the results to another (see ``consumer.py`` for the delivery guarantees).

One small interface (:class:`~modelhost.streams.consumer.Source`,
:class:`~modelhost.streams.consumer.Sink`) with a backend per URI scheme, loaded when
used: ``redis://host:port/STREAM`` (Redis Streams), ``nats://host:port/SUBJECT``
(NATS JetStream), ``kafka://host:port/TOPIC`` (Kafka).
"""

from __future__ import annotations

from modelhost.errors import InvalidInputError
from modelhost.streams.consumer import Sink, Source, StreamConsumer, StreamOptions
from modelhost.streams.events import Event
from modelhost.streams.uris import describe

__all__ = ["Event", "Sink", "Source", "StreamConsumer", "StreamOptions", "dead_letter_uri",
           "open_sink", "open_source"]

_BACKENDS = {"redis": "redis", "rediss": "redis", "nats": "nats", "tls": "nats",
             "kafka": "kafka"}


def _backend(uri: str) -> str:
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise InvalidInputError(f"a stream is redis://host:port/STREAM (Redis Streams), "
                                f"nats://host:port/SUBJECT (NATS JetStream) or "
                                f"kafka://host:port/TOPIC (Kafka), got {describe(uri)!r}")
    return backend


def open_source(uri: str, *, group: str, consumer: str, claim_idle_ms: int = 30_000,
                start: str = "0", in_flight: int = 256) -> Source:
    """A source for ``uri``: the consumer ``consumer`` of ``group``. ``start``: where a
    new group begins (``0`` every event kept, ``$`` only new ones); ``in_flight``: the
    consumer's batch (NATS caps the group's unacknowledged messages at it)."""
    backend = _backend(uri)
    if backend == "nats":
        from modelhost.streams.nats_streams import NatsSource, NatsSubject

        return NatsSource(NatsSubject.parse(uri), group=group, claim_idle_ms=claim_idle_ms,
                          start=start, in_flight=in_flight)
    if backend == "kafka":
        from modelhost.streams.kafka_streams import KafkaSource, KafkaTopic

        return KafkaSource(KafkaTopic.parse(uri), group=group, consumer=consumer,
                           claim_idle_ms=claim_idle_ms, start=start)
    from modelhost.streams.redis_streams import RedisSource, RedisStream

    return RedisSource(RedisStream.parse(uri), group=group, consumer=consumer,
                       claim_idle_ms=claim_idle_ms, start=start)


def open_sink(uri: str) -> Sink:
    backend = _backend(uri)
    if backend == "nats":
        from modelhost.streams.nats_streams import NatsSink, NatsSubject

        return NatsSink(NatsSubject.parse(uri))
    if backend == "kafka":
        from modelhost.streams.kafka_streams import KafkaSink, KafkaTopic

        return KafkaSink(KafkaTopic.parse(uri))
    from modelhost.streams.redis_streams import RedisSink, RedisStream

    return RedisSink(RedisStream.parse(uri))


def dead_letter_uri(source: str) -> str:
    """The default dead letters of ``source``: the stream ``<STREAM>-dead`` beside it
    (the subject ``<SUBJECT>.dead`` on NATS)."""
    base, _, query = source.partition("?")
    suffix = ".dead" if _backend(source) == "nats" else "-dead"
    return f"{base.rstrip('/')}{suffix}" + (f"?{query}" if query else "")
