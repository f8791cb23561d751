"""The brokers of the stream tests, behind one small synchronous face: where a stream
is, how to put events in it, and what came out (results, dead letters, what is left
pending in the consumer group)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import redis

from tests.services import require_kafka, require_nats, require_redis

Fields = dict[str, str]


class Broker(Protocol):
    name: str

    def uri(self, which: str) -> str: ...  # "in", "out" or the default dead letters
    def produce(self, events: Sequence[tuple[bytes, str | None]]) -> list[str]: ...
    def results(self) -> list[Fields]: ...
    def count(self) -> int: ...  # results so far (cheap)
    def dead(self) -> list[tuple[bytes, Fields]]: ...
    def pending(self, group: str = "modelhost") -> int: ...
    def close(self) -> None: ...


class RedisBroker:
    name = "redis"

    def __init__(self) -> None:
        url = require_redis()
        self._base = url.rsplit("/", 1)[0]
        self._prefix = f"test-{uuid.uuid4().hex[:12]}"
        self._r = redis.Redis.from_url(url)

    def _stream(self, which: str) -> str:
        return {"in": f"{self._prefix}-in", "out": f"{self._prefix}-out",
                "dead": f"{self._prefix}-in-dead"}[which]

    def uri(self, which: str) -> str:
        return f"{self._base}/{self._stream(which)}"

    def produce(self, events: Sequence[tuple[bytes, str | None]]) -> list[str]:
        pipe = self._r.pipeline()
        for body, key in events:
            pipe.xadd(self._stream("in"), {"body": body, **({"key": key} if key else {})})
        return [i.decode() for i in pipe.execute()]

    def results(self) -> list[Fields]:
        return [{k.decode(): v.decode() for k, v in f.items()}
                for _, f in self._r.xrange(self._stream("out"))]

    def count(self) -> int:
        return int(self._r.xlen(self._stream("out")))

    def dead(self) -> list[tuple[bytes, Fields]]:
        return [(f[b"body"], {k.decode(): v.decode() for k, v in f.items() if k != b"body"})
                for _, f in self._r.xrange(self._stream("dead"))]

    def pending(self, group: str = "modelhost") -> int:
        return int(self._r.xpending(self._stream("in"), group)["pending"])

    def consumers(self, group: str = "modelhost") -> list[str]:
        return [c["name"].decode() for c in self._r.xinfo_consumers(self._stream("in"), group)]

    def close(self) -> None:
        self._r.delete(*(self._stream(w) for w in ("in", "out", "dead")))
        self._r.close()


class NatsBroker:
    name = "nats"

    def __init__(self) -> None:
        self._url = require_nats()
        self._prefix = f"test.{uuid.uuid4().hex[:12]}"

    def _subject(self, which: str) -> str:
        return {"in": f"{self._prefix}.in", "out": f"{self._prefix}.out",
                "dead": f"{self._prefix}.in.dead"}[which]

    def uri(self, which: str) -> str:
        return f"{self._url}/{self._subject(which)}"

    def _run(self, work: Any) -> Any:
        async def main() -> Any:
            import nats

            nc = await nats.connect(self._url)
            try:
                return await work(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(main())

    def produce(self, events: Sequence[tuple[bytes, str | None]]) -> list[str]:
        from modelhost.streams.nats_streams import _stream_of

        async def work(js: Any) -> list[str]:
            await _stream_of(js, self._subject("in"))
            acks = await asyncio.gather(*(
                js.publish(self._subject("in"), body, headers={"key": key} if key else None)
                for body, key in events))
            return [str(a.seq) for a in acks]

        return list(self._run(work))

    def _messages(self, which: str) -> list[Any]:
        """Every message of the subject's stream, in order (an ephemeral consumer)."""
        async def work(js: Any) -> list[Any]:
            import nats.js.errors

            try:
                stream = await js.find_stream_name_by_subject(self._subject(which))
            except nats.js.errors.NotFoundError:
                return []
            total = (await js.stream_info(stream)).state.messages
            from nats.js.api import AckPolicy, ConsumerConfig

            # No acknowledgements: nothing caps the messages handed out unacknowledged.
            sub = await js.pull_subscribe(self._subject(which), stream=stream,
                                          config=ConsumerConfig(ack_policy=AckPolicy.NONE))
            found: list[Any] = []
            while len(found) < total:
                found += await sub.fetch(min(total - len(found), 1000), timeout=5)
            await sub.unsubscribe()
            return found

        return list(self._run(work))

    def count(self) -> int:
        async def work(js: Any) -> int:
            import nats.js.errors

            try:
                stream = await js.find_stream_name_by_subject(self._subject("out"))
            except nats.js.errors.NotFoundError:
                return 0
            return int((await js.stream_info(stream)).state.messages)

        return int(self._run(work))

    def results(self) -> list[Fields]:
        return [json.loads(m.data) for m in self._messages("out")]

    def dead(self) -> list[tuple[bytes, Fields]]:
        return [(m.data, dict(m.headers or {})) for m in self._messages("dead")]

    def pending(self, group: str = "modelhost") -> int:
        async def work(js: Any) -> int:
            stream = await js.find_stream_name_by_subject(self._subject("in"))
            info = await js.consumer_info(stream, group)
            return int(info.num_pending) + int(info.num_ack_pending)

        return int(self._run(work))

    def close(self) -> None:
        async def work(js: Any) -> None:
            import nats.js.errors

            for which in ("in", "out", "dead"):
                try:
                    stream = await js.find_stream_name_by_subject(self._subject(which))
                    await js.delete_stream(stream)
                except nats.js.errors.NotFoundError:
                    pass

        self._run(work)


class KafkaBroker:
    """A broker speaking the Kafka protocol (Tansu); the input topic has three
    partitions, so that the order per key is what the test checks, not a single log's."""

    name = "kafka"

    def __init__(self) -> None:
        self._servers = require_kafka()
        self._prefix = f"test-{uuid.uuid4().hex[:12]}"
        self._produced: dict[int, int] = {}  # partition -> offset after the last event

    def _topic(self, which: str) -> str:
        return {"in": f"{self._prefix}-in", "out": f"{self._prefix}-out",
                "dead": f"{self._prefix}-in-dead"}[which]

    def uri(self, which: str) -> str:
        return f"kafka://{self._servers}/{self._topic(which)}"

    def produce(self, events: Sequence[tuple[bytes, str | None]]) -> list[str]:
        async def main() -> list[str]:
            from aiokafka import AIOKafkaProducer
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(bootstrap_servers=self._servers)
            await admin.start()
            await admin.create_topics([NewTopic(self._topic("in"), num_partitions=3,
                                                replication_factor=1)])
            await admin.close()
            producer = AIOKafkaProducer(bootstrap_servers=self._servers, acks="all")
            await producer.start()
            try:
                sent = [await producer.send(self._topic("in"), body,
                                            key=key.encode() if key else None)
                        for body, key in events]
                done = await asyncio.gather(*sent)
            finally:
                await producer.stop()
            for m in done:
                self._produced[m.partition] = max(self._produced.get(m.partition, 0),
                                                  m.offset + 1)
            return [f"{m.partition}:{m.offset}" for m in done]

        return asyncio.run(main())

    def _records(self, which: str) -> list[Any]:
        async def main() -> list[Any]:
            from aiokafka import AIOKafkaConsumer, TopicPartition

            consumer = AIOKafkaConsumer(bootstrap_servers=self._servers,
                                        enable_auto_commit=False)
            await consumer.start()
            try:
                if self._topic(which) not in await consumer.topics():  # (fresh metadata)
                    return []
                partitions = consumer.partitions_for_topic(self._topic(which)) or set()
                tps = [TopicPartition(self._topic(which), p) for p in sorted(partitions)]
                if not tps:
                    return []
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                found: list[Any] = []
                quiet = 0
                while quiet < 2:  # until two polls in a row find nothing more
                    batches = await consumer.getmany(timeout_ms=300, max_records=5000)
                    quiet = 0 if batches else quiet + 1
                    for tp in tps:
                        found += batches.get(tp, [])
                return found
            finally:
                await consumer.stop()

        return asyncio.run(main())

    def results(self) -> list[Fields]:
        return [json.loads(r.value) for r in self._records("out")]

    def count(self) -> int:
        async def main() -> int:
            from aiokafka import AIOKafkaConsumer, TopicPartition

            consumer = AIOKafkaConsumer(bootstrap_servers=self._servers)
            await consumer.start()
            try:
                if self._topic("out") not in await consumer.topics():
                    return 0
                tp = TopicPartition(self._topic("out"), 0)  # the sink's one partition
                return int((await consumer.end_offsets([tp]))[tp])
            finally:
                await consumer.stop()

        return asyncio.run(main())

    def dead(self) -> list[tuple[bytes, Fields]]:
        return [(r.value, {k: v.decode() for k, v in r.headers})
                for r in self._records("dead")]

    def pending(self, group: str = "modelhost") -> int:
        async def main() -> int:
            from aiokafka import AIOKafkaConsumer, TopicPartition

            consumer = AIOKafkaConsumer(bootstrap_servers=self._servers, group_id=group,
                                        enable_auto_commit=False)
            await consumer.start()
            try:
                # What was produced, by partition (the broker's own end offsets run
                # short of its records: Tansu answers ListOffsets so).
                tps = [TopicPartition(self._topic("in"), p) for p in range(3)]
                return sum([self._produced.get(tp.partition, 0)
                            - ((await consumer.committed(tp)) or 0) for tp in tps])
            finally:
                await consumer.stop()

        return asyncio.run(main())

    def close(self) -> None:
        async def main() -> None:
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=self._servers)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                await admin.delete_topics([self._topic(w) for w in ("in", "out", "dead")
                                           if self._topic(w) in existing])
            finally:
                await admin.close()

        asyncio.run(main())


BROKERS = {"redis": RedisBroker, "nats": NatsBroker, "kafka": KafkaBroker}
