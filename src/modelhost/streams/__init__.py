"""Stream inference: score the events of a stream with the deployed version and write
the results to another (see ``consumer.py`` for the delivery guarantees).

One small interface (:class:`~modelhost.streams.consumer.Source`,
:class:`~modelhost.streams.consumer.Sink`) with a backend per URI scheme, loaded when
used: ``redis://host:port/STREAM`` (Redis Streams).
"""

from __future__ import annotations

from modelhost.errors import InvalidInputError
from modelhost.streams.consumer import Sink, Source, StreamConsumer, StreamOptions
from modelhost.streams.events import Event

__all__ = ["Event", "Sink", "Source", "StreamConsumer", "StreamOptions", "dead_letter_uri",
           "open_sink", "open_source"]

_SCHEMES = ("redis", "rediss")


def _scheme(uri: str) -> str:
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in _SCHEMES:
        return scheme
    raise InvalidInputError(f"a stream is redis://host:port/STREAM (Redis Streams), got "
                            f"{uri[:120]!r}")


def open_source(uri: str, *, group: str, consumer: str, claim_idle_ms: int = 30_000,
                start: str = "0") -> Source:
    _scheme(uri)
    from modelhost.streams.redis_streams import RedisSource, RedisStream

    return RedisSource(RedisStream.parse(uri), group=group, consumer=consumer,
                       claim_idle_ms=claim_idle_ms, start=start)


def open_sink(uri: str, *, maxlen: int | None = None) -> Sink:
    _scheme(uri)
    from modelhost.streams.redis_streams import RedisSink, RedisStream

    return RedisSink(RedisStream.parse(uri), maxlen=maxlen)


def dead_letter_uri(source: str) -> str:
    """The default dead letters of ``source``: the stream ``<STREAM>-dead`` beside it."""
    base, _, query = source.partition("?")
    return f"{base.rstrip('/')}-dead" + (f"?{query}" if query else "")
