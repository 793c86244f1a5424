"""The gateway's Kafka side: one producer for everything it writes (bid-requests, ad-bids,
ad-events) and one consumer of bid-replies, bridged into the asyncio loop that serves HTTP.

librdkafka (confluent-kafka) rather than aiokafka: on a 2-core box the loop that parses HTTP and
validates BidRequests is the bottleneck, and librdkafka does the batching, compression, protocol
encoding and record parsing in C on its own threads, where aiokafka does them in Python on that
loop. The bridge costs one `call_soon_threadsafe` per delivery report and per batch of replies.
The producer lingers 1 ms (the worker's batch window is 5 ms, tmax ~100 ms): idempotent, acks=all,
and the murmur2 partitioner of the Java client and Faust, so a user's request lands on the
partition whose worker holds their profile, budget and caps.

The reply consumer joins no group: it is assigned every partition of bid-replies at the end
offsets read when it starts (so no reply to a request it forwarded can be behind its position),
and keeps the records whose `ms-gateway` header names this gateway instance.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.errors import ScorerError
from streams.replyto import HEADER_CORRELATION, HEADER_GATEWAY, header
from streams.settings import Settings

log = logging.getLogger("streams.gateway.bus")

PRODUCER_CONFIG = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 1,
}
CONSUMER_CONFIG = {"enable.auto.commit": False, "enable.partition.eof": False, "fetch.wait.max.ms": 100}
Headers = Sequence[tuple[str, bytes]]
OnReplies = Callable[[list[tuple[str, bytes]]], None]  # (correlation id, value) pairs


class KafkaUnavailable(ScorerError):
    """Kafka refused or could not take a record (the caller answers 5xx or a no-bid)."""


@dataclass(frozen=True)
class Delivered:
    partition: int
    offset: int


class Bus(Protocol):
    """What the HTTP side needs of Kafka (unit tests give a fake)."""

    instance: str

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Delivered:
        """Resolves once Kafka acknowledged the record; raises KafkaUnavailable otherwise."""
        ...

    def ready(self) -> bool: ...


class KafkaBus:
    """The librdkafka producer and reply consumer, each polled by a thread of its own."""

    def __init__(self, settings: Settings, instance: str, on_replies: OnReplies) -> None:
        self.instance = instance
        self._instance_bytes = instance.encode()
        self._replies_topic = settings.topics.bid_replies
        self._on_replies = on_replies
        client = f"gateway-{instance}"
        self._producer = Producer(settings.confluent_config(**PRODUCER_CONFIG, **{"client.id": client}))
        # group.id is required by the client, but the consumer only uses assign(): it never joins
        self._consumer = Consumer(
            settings.confluent_config(**CONSUMER_CONFIG, **{"group.id": client, "client.id": client})
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._assigned = threading.Event()
        self._threads: list[threading.Thread] = []

    async def start(self, timeout_s: float = 30.0) -> None:
        """Assign the reply partitions (at their end offsets) and start both poll threads."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._assign, timeout_s)
        for name, target in (("gateway-producer", self._poll_producer), ("gateway-replies", self._consume)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _assign(self, timeout_s: float) -> None:
        meta = self._consumer.list_topics(self._replies_topic, timeout=timeout_s)
        topic = meta.topics.get(self._replies_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise KafkaUnavailable(f"topic {self._replies_topic} is missing: create the topics first")
        assignment = []
        for p in sorted(topic.partitions):
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._replies_topic, p), timeout=timeout_s
            )
            assignment.append(TopicPartition(self._replies_topic, p, high))
        self._consumer.assign(assignment)
        self._assigned.set()
        log.info("reading %s (%d partitions) from their end offsets", self._replies_topic, len(assignment))

    def ready(self) -> bool:
        return self._assigned.is_set() and not self._stopping.is_set()

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Delivered:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Delivered] = loop.create_future()

        def settle(err: KafkaError | None, partition: int, offset: int) -> None:
            if done.done():
                return
            if err is not None:
                done.set_exception(KafkaUnavailable(f"{topic}: {err.str()}"))
            else:
                done.set_result(Delivered(partition, offset))

        def report(err: KafkaError | None, msg: Message) -> None:  # on the producer's poll thread
            loop.call_soon_threadsafe(settle, err, msg.partition() or 0, msg.offset() or 0)

        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        try:
            self._producer.produce(
                topic, value=value, key=key, headers=list(headers) or None, on_delivery=report, **extra
            )
        except (BufferError, KafkaException) as exc:
            raise KafkaUnavailable(f"{topic}: {exc}") from exc
        return await done

    def _poll_producer(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    def _consume(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stopping.is_set():
            try:
                # consume(n, timeout) waits for n records or the timeout: a reply would wait with
                # it. A poll returns with the first record; what came with it is drained at once.
                first = self._consumer.poll(0.1)
                messages = (
                    [] if first is None else [first, *self._consumer.consume(num_messages=499, timeout=0)]
                )
            except KafkaException as exc:
                log.warning("reading %s: %s", self._replies_topic, exc)
                continue
            mine: list[tuple[str, bytes]] = []
            for msg in messages:
                if msg.error() is not None:
                    log.warning("reading %s: %s", self._replies_topic, msg.error())
                    continue
                raw_headers = msg.headers() or []  # a list of pairs from the consumer
                pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
                headers = [(name, data) for name, data in pairs if isinstance(data, bytes)]
                gateway = header(headers, HEADER_GATEWAY)
                corr = header(headers, HEADER_CORRELATION)
                value = msg.value()
                if gateway == self._instance_bytes and isinstance(corr, bytes) and isinstance(value, bytes):
                    mine.append((corr.decode("utf-8", errors="replace"), value))
            if mine:
                loop.call_soon_threadsafe(self._on_replies, mine)

    async def close(self, flush_s: float = 10.0) -> None:
        """Deliver what is queued (within `flush_s`), then stop the threads and close both clients."""
        left = await asyncio.to_thread(self._producer.flush, flush_s)
        if left:
            log.error("%d records were not delivered before the gateway stopped", left)
        self._stopping.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 5.0)
        self._producer.poll(0)  # delivery reports of the last flush
        await asyncio.to_thread(self._consumer.close)
