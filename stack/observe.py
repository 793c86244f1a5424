"""Watching a run from outside: read output topics, and tell when the worker has caught up.

"Caught up" is exact rather than a guess: the worker's consumer group has committed offsets
equal to the end offsets of every input partition. Faust commits only offsets whose outputs
were acknowledged, so once that holds, every output of every input is readable.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from stack.errors import StackError
from streams.settings import Settings


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int  # the record's Kafka timestamp (create time)
    received_s: float  # time.time() when this reader got it


def _partitions(consumer: Consumer, topics: Iterable[str]) -> list[TopicPartition]:
    meta = consumer.list_topics(timeout=10)
    tps: list[TopicPartition] = []
    for topic in topics:
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            raise StackError(f"topic {topic} does not exist: {info.error if info else 'missing'}")
        tps.extend(TopicPartition(topic, p) for p in sorted(info.partitions))
    return tps


def end_offsets(consumer: Consumer, tps: Sequence[TopicPartition]) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}


def lag(settings: Settings, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """Uncommitted records per input partition for the worker's consumer group (app id)."""
    probe = Consumer(
        settings.confluent_config(**{"group.id": settings.faust_app_id, "enable.auto.commit": False})
    )
    try:
        tps = _partitions(probe, topics)
        ends = end_offsets(probe, tps)
        committed = probe.committed(tps, timeout=10)
        return {
            (tp.topic, tp.partition): ends[(tp.topic, tp.partition)] - max(tp.offset, 0) for tp in committed
        }
    finally:
        probe.close()


def wait_caught_up(
    settings: Settings,
    topics: Sequence[str],
    *,
    timeout: float,
    alive: Callable[[], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> float:
    """Block until the worker has committed every input record; return the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            pending = lag(settings, topics)
        except KafkaException:
            pending = {("?", -1): -1}
        remaining = sum(v for v in pending.values() if v > 0)
        if on_progress is not None:
            on_progress(remaining)
        if pending and all(v == 0 for v in pending.values()):
            return time.monotonic() - start
        if alive is not None:
            alive()
        if time.monotonic() - start > timeout:
            stuck = {f"{t}[{p}]": n for (t, p), n in pending.items() if n}
            raise StackError(f"worker did not catch up within {timeout:.0f}s; uncommitted records: {stuck}")
        time.sleep(0.25)


def _headers(raw: object) -> dict[str, bytes]:
    pairs: list[tuple[str, bytes | str | None]] = list(raw or [])  # type: ignore[call-overload]
    return {k: v if isinstance(v, bytes) else (v or "").encode() for k, v in pairs}


def assigned(settings: Settings, topics: Sequence[str]) -> bool:
    """True when the worker group is stable and every partition of `topics` is assigned."""
    admin = AdminClient(settings.confluent_config())
    future = admin.describe_consumer_groups([settings.faust_app_id], request_timeout=10)[
        settings.faust_app_id
    ]
    try:
        group = future.result(timeout=15)
    except (KafkaException, TimeoutError):  # the group may not exist yet, or the coordinator may be loading
        return False
    if group.state != ConsumerGroupState.STABLE:
        return False
    have = {(tp.topic, tp.partition) for m in group.members for tp in (m.assignment.topic_partitions or [])}
    probe = Consumer(settings.confluent_config(**{"group.id": f"probe-{uuid.uuid4()}"}))
    try:
        want = {(tp.topic, tp.partition) for tp in _partitions(probe, topics)}
    finally:
        probe.close()
    return want <= have


def wait_assigned(
    settings: Settings, topics: Sequence[str], *, timeout: float, alive: Callable[[], None] | None = None
) -> float:
    """Block until the worker group owns every input partition (so produced events are read at once)."""
    start = time.monotonic()
    while not assigned(settings, topics):
        if alive is not None:
            alive()
        if time.monotonic() - start > timeout:
            raise StackError(
                f"the worker group {settings.faust_app_id} did not take its partitions in {timeout:.0f}s"
            )
        time.sleep(0.25)
    return time.monotonic() - start


class TopicReader:
    """Reads topics from the beginning, independently of any consumer group."""

    def __init__(self, settings: Settings, topics: Sequence[str]) -> None:
        self._consumer = Consumer(
            settings.confluent_config(
                **{
                    "group.id": f"reader-{uuid.uuid4()}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                }
            )
        )
        self._tps = _partitions(self._consumer, topics)
        self._consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in self._tps])
        self.records: list[Consumed] = []

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self, timeout: float = 0.2) -> list[Consumed]:
        """New records since the last call (at most a few hundred), as soon as there are any.

        `consume(n, timeout)` waits until it has n records or the timeout passes, so it would
        stamp a record up to `timeout` late; a single `poll` returns with the first record."""
        got = []
        messages = self._consumer.consume(num_messages=500, timeout=0)
        if not messages:
            first = self._consumer.poll(timeout)
            messages = [] if first is None else [first, *self._consumer.consume(num_messages=499, timeout=0)]
        received = time.time()
        for msg in messages:
            if msg.error() is not None:
                raise StackError(f"consume error: {msg.error()}")
            got.append(
                Consumed(
                    topic=msg.topic() or "",
                    partition=msg.partition() or 0,
                    offset=msg.offset() or 0,
                    key=msg.key(),
                    value=msg.value(),
                    headers=_headers(msg.headers()),
                    timestamp_ms=msg.timestamp()[1],
                    received_s=received,
                )
            )
        self.records.extend(got)
        return got

    def read_to_end(self, timeout: float = 30.0) -> list[Consumed]:
        """Everything written so far: reads until each partition's position reaches its end offset."""
        ends = end_offsets(self._consumer, self._tps)
        deadline = time.monotonic() + timeout
        while True:
            positions = {(tp.topic, tp.partition): tp.offset for tp in self._consumer.position(self._tps)}
            if all(positions.get(k, -1) >= end or end == 0 for k, end in ends.items()):
                return self.records
            if time.monotonic() > deadline:
                raise StackError(
                    f"could not read to the end within {timeout:.0f}s: at {positions}, ends {ends}"
                )
            self.poll()

    def by_topic(self, topic: str) -> list[Consumed]:
        return [r for r in self.records if r.topic == topic]
