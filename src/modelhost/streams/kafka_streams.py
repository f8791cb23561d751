"""Kafka (and brokers speaking its protocol) as a source (a consumer group) and a sink.

``kafka://host:port[,host:port...]/TOPIC``. The source commits a partition's offset
only once the results (or dead letters) of every event before it are written, so a
consumer that dies is replaced (once the group notices, within ``claim_idle_ms``) by
one that reads again from the last commit, in each partition's order: at least once,
with the order per key kept (a key's messages share a partition). An event's key is
the message key; a result is produced with it, so results of a key share a partition
too. A topic that does not exist is created (one partition).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from modelhost.errors import InvalidInputError, MissingDependencyError, StoreUnavailableError
from modelhost.streams.events import Event, message
from modelhost.streams.uris import describe


@dataclass(frozen=True)
class KafkaTopic:
    servers: str  # host:port[,host:port...]
    topic: str

    @classmethod
    def parse(cls, uri: str) -> KafkaTopic:
        parts = urlsplit(uri)
        topic = unquote(parts.path.lstrip("/"))
        if "@" in parts.netloc:  # never echo what may be a password
            raise InvalidInputError("a Kafka URI takes no user or password: "
                                    "kafka://host:port/TOPIC")
        if parts.scheme != "kafka" or not parts.netloc or not topic or "/" in topic:
            raise InvalidInputError(f"a Kafka topic is kafka://host:port/TOPIC, got "
                                    f"{describe(uri)!r}")
        return cls(parts.netloc, topic)


def _aiokafka() -> Any:
    try:
        return importlib.import_module("aiokafka")
    except ImportError as exc:
        raise MissingDependencyError("Kafka streams", "kafka") from exc


async def _ensure_topic(servers: str, topic: str) -> None:
    admin_module = importlib.import_module("aiokafka.admin")
    errors = importlib.import_module("aiokafka.errors")
    admin = admin_module.AIOKafkaAdminClient(bootstrap_servers=servers)
    try:
        await admin.start()
        if topic not in await admin.list_topics():
            await admin.create_topics([admin_module.NewTopic(topic, num_partitions=1,
                                                             replication_factor=1)])
    except errors.TopicAlreadyExistsError:
        pass
    except (errors.KafkaError, OSError) as exc:
        raise StoreUnavailableError(f"Kafka at {servers}", type(exc).__name__) from exc
    finally:
        await admin.close()


class KafkaSource:
    def __init__(self, where: KafkaTopic, *, group: str, consumer: str,
                 claim_idle_ms: int = 30_000, start: str = "0") -> None:
        self.where = where
        self.group = group
        self.consumer_name = consumer
        self.claim_idle_ms = claim_idle_ms
        self._start = start
        self._consumer: Any = None

    async def open(self) -> None:
        aiokafka = _aiokafka()
        await _ensure_topic(self.where.servers, self.where.topic)
        session_ms = max(6_000, self.claim_idle_ms)
        self._consumer = aiokafka.AIOKafkaConsumer(
            self.where.topic, bootstrap_servers=self.where.servers, group_id=self.group,
            client_id=self.consumer_name, enable_auto_commit=False,
            auto_offset_reset="latest" if self._start == "$" else "earliest",
            session_timeout_ms=session_ms, heartbeat_interval_ms=session_ms // 3)
        await self._consumer.start()

    async def read(self, count: int, block_ms: int) -> list[Event]:
        batches = await self._consumer.getmany(timeout_ms=block_ms, max_records=count)
        events = []
        for tp, records in batches.items():
            for record in records:
                key = record.key.decode("utf-8", "replace") if record.key else None
                events.append(Event(f"{tp.partition}:{record.offset}", record.value or b"",
                                    key))
        return events

    async def ack(self, events: Sequence[Event]) -> None:
        """Commit, per partition, the offset after the last of ``events`` (a batch is
        acknowledged whole and in order)."""
        structs = importlib.import_module("aiokafka.structs")
        offsets: dict[Any, int] = {}
        for event in events:
            partition, offset = event.id.split(":")
            tp = structs.TopicPartition(self.where.topic, int(partition))
            offsets[tp] = max(offsets.get(tp, 0), int(offset) + 1)
        if offsets:
            await self._consumer.commit(offsets)

    async def rewind(self) -> None:
        """Read again from the last commit (the results after it were not written)."""
        for tp in self._consumer.assignment():
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    async def lag(self) -> int | None:
        total = 0
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            committed = await self._consumer.committed(tp)
            if end is not None:
                total += max(0, end - (committed or 0))
        return total

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


class KafkaSink:
    def __init__(self, where: KafkaTopic) -> None:
        self.where = where
        self._producer: Any = None

    async def open(self) -> None:
        aiokafka = _aiokafka()
        await _ensure_topic(self.where.servers, self.where.topic)
        self._producer = aiokafka.AIOKafkaProducer(bootstrap_servers=self.where.servers,
                                                   acks="all")
        await self._producer.start()

    async def write(self, entries: Sequence[Mapping[str, bytes | str]]) -> None:
        """Produce every entry and wait until the broker has them all."""
        sent = []
        for fields in entries:
            key, value, headers = message(fields)
            sent.append(await self._producer.send(
                self.where.topic, value, key=key.encode() if key else None,
                headers=[(k, v.encode()) for k, v in headers.items()] or None))
        await asyncio.gather(*sent)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
