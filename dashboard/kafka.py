"""The dashboard as a downstream subscriber: reads the result topics into a `Dashboard`.

One librdkafka consumer in a thread reads, from the beginning:
- the output topics, each record validated against its published model (`streams.schemas`);
- the dead-letter topics, for their `x-dlq-reason` and `x-dlq-*` source headers only: the
  value is the customer's original bytes and is never decoded or kept;
- the input topics, for each record's position and Kafka timestamp only (the latency join, see
  `dashboard.state`): their values are dropped unread.

Its consumer group is its own, `<app id>-dashboard`, used for committing its read positions (so
operators see how far the dashboard has read) and never for sharing partitions: it assigns
itself every partition, so a second dashboard shows the same figures instead of half of them.
Every start reads from the beginning, because the aggregates live in memory. Topics or
partitions that do not exist yet (`python -m stack up` before a worker created them) are
picked up when they appear.

A second thread asks the broker for the worker group's lag every few seconds: end offset minus
committed offset per input partition, as `stack.observe.lag` computes it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Message,
)
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, OffsetSpec
from pydantic import BaseModel, ValidationError

from dashboard.state import Dashboard, Source, lag_from
from streams.schemas import BidResponse, BrandAlert, BrandWindow, CsReply, SegmentUpdate
from streams.schemas.adevents import AdOutcome
from streams.settings import Settings
from streams.topics import DLQ_SUFFIX, INPUTS

log = logging.getLogger("dashboard.kafka")

REFRESH_TOPICS_S = 5.0
LAG_INTERVAL_S = 2.0
MAX_REASON_CHARS = 64

OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    "segment-updates": SegmentUpdate,
    "cs-replies": CsReply,
    "ad-bids": BidResponse,
    "brand-sentiment": BrandWindow,
    "brand-alerts": BrandAlert,
    "ad-outcomes": AdOutcome,
}


def dashboard_group(settings: Settings) -> str:
    return f"{settings.faust_app_id}-dashboard"


def _headers(msg: Message) -> dict[str, str]:
    """A record's headers as text (the `x-dlq-*` ones are ASCII; anything else is replaced)."""
    out = {}
    headers = msg.headers() or []
    for key, value in headers.items() if isinstance(headers, dict) else headers:
        raw = value.encode() if isinstance(value, str) else (value or b"")
        out[key] = raw.decode("utf-8", errors="replace")
    return out


def dead_letter_source(headers: dict[str, str]) -> Source | None:
    """The input record a dead letter came from (its `x-dlq-*` headers), if they are whole."""
    topic, partition, offset = (headers.get(f"x-dlq-{n}") for n in ("topic", "partition", "offset"))
    if topic is None or partition is None or offset is None:
        return None
    try:
        return (topic, int(partition), int(offset))
    except ValueError:
        return None


def apply_record(state: Dashboard, msg: Message, prefix: str) -> None:
    """One consumed record into the state (the caller holds the state's lock)."""
    topic = msg.topic() or ""
    base = topic.removeprefix(prefix)
    kind, ts = msg.timestamp()
    timestamp_ms = None if kind == TIMESTAMP_NOT_AVAILABLE else ts
    if base in INPUTS:
        state.input_record(topic, msg.partition() or 0, msg.offset() or 0, timestamp_ms)
        return
    if base.endswith(DLQ_SUFFIX):
        headers = _headers(msg)
        reason = headers.get("x-dlq-reason", "unknown")[:MAX_REASON_CHARS]
        state.dead_letter(topic, reason, dead_letter_source(headers))
        return
    model = OUTPUT_MODELS.get(base)
    if model is None:
        return
    try:
        record = model.model_validate_json(msg.value() or b"")
    except ValidationError:
        log.warning("%s[%s]@%s does not match %s", topic, msg.partition(), msg.offset(), model.__name__)
        state.undecodable_output(topic)
        return
    if isinstance(record, SegmentUpdate):
        state.segment_update(record, timestamp_ms)
    elif isinstance(record, CsReply):
        state.cs_reply(record, timestamp_ms)
    elif isinstance(record, BidResponse):
        state.bid_response(record, timestamp_ms)
    elif isinstance(record, BrandWindow):
        state.brand_window(record, timestamp_ms)
    elif isinstance(record, BrandAlert):
        state.brand_alert(record, timestamp_ms)
    elif isinstance(record, AdOutcome):
        state.ad_outcome(record, timestamp_ms)


class Feed:
    """The two background threads, the reader and the lag probe, writing into `state` under `lock`."""

    def __init__(self, settings: Settings, state: Dashboard, lock: threading.Lock) -> None:
        self._settings = settings
        self._state = state
        self._lock = lock
        topics = settings.topics
        self._topics = [*topics.outputs, *topics.dead_letters, *topics.inputs]
        self._missing: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, name="dashboard-reader", daemon=True),
            threading.Thread(target=self._probe_lag, name="dashboard-lag", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _read(self) -> None:
        consumer = Consumer(
            self._settings.confluent_config(
                **{
                    "group.id": dashboard_group(self._settings),
                    "enable.auto.commit": True,
                    "auto.offset.reset": "earliest",
                }
            )
        )
        assigned: set[tuple[str, int]] = set()
        refresh_at = 0.0
        prefix = self._settings.topic_prefix
        try:
            while not self._stop.is_set():
                if time.monotonic() >= refresh_at:
                    refresh_at = time.monotonic() + REFRESH_TOPICS_S
                    self._assign_new(consumer, assigned)
                if not assigned:
                    self._stop.wait(0.5)
                    continue
                messages = consumer.consume(num_messages=500, timeout=0.2)
                good = []
                for msg in messages:
                    if msg.error() is not None:
                        log.warning("consume error: %s", msg.error())
                    else:
                        good.append(msg)
                if good:
                    with self._lock:
                        for msg in good:
                            apply_record(self._state, msg, prefix)
        finally:
            consumer.close()

    def _assign_new(self, consumer: Consumer, assigned: set[tuple[str, int]]) -> None:
        try:
            meta = consumer.list_topics(timeout=5)
        except KafkaException as exc:
            log.warning("cannot list topics yet: %s", exc)
            return
        new = []
        for topic in self._topics:
            info = meta.topics.get(topic)
            if info is None or info.error is not None:
                continue
            for partition in sorted(info.partitions):
                if (topic, partition) not in assigned:
                    new.append(TP(topic, partition, OFFSET_BEGINNING))
                    assigned.add((topic, partition))
        if new:
            consumer.incremental_assign(new)
            log.info("reading %d more partitions from the beginning", len(new))
        missing = [t for t in self._topics if not any(t == a for a, _ in assigned)]
        if missing and missing != self._missing:  # said once, not every refresh
            log.info("waiting for topics to exist: %s", ", ".join(missing))
        self._missing = missing

    def _probe_lag(self) -> None:
        admin = AdminClient(self._settings.confluent_config())
        while not self._stop.wait(LAG_INTERVAL_S):
            try:
                lag = worker_lag(admin, self._settings)
            except (KafkaException, TimeoutError) as exc:
                log.warning("lag probe failed: %s", exc)
                continue
            with self._lock:
                self._state.set_lag(lag, int(datetime.now(UTC).timestamp() * 1000))


def worker_lag(admin: AdminClient, settings: Settings, timeout: float = 5.0) -> dict[tuple[str, int], int]:
    """The worker group's uncommitted records per partition of every topic it consumes."""
    meta = admin.list_topics(timeout=timeout)
    tps = [
        TP(topic, p)
        for topic in settings.topics.consumed
        if (info := meta.topics.get(topic)) is not None and info.error is None
        for p in sorted(info.partitions)
    ]
    if not tps:
        return {}

    def offsets(spec: OffsetSpec) -> dict[tuple[str, int], int]:
        futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=timeout)
        return {(tp.topic, tp.partition): f.result(timeout=timeout).offset for tp, f in futures.items()}

    group = settings.faust_app_id
    request = [ConsumerGroupTopicPartitions(group, tps)]
    result = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group].result(
        timeout=timeout
    )
    committed = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []}
    return lag_from(offsets(OffsetSpec.latest()), offsets(OffsetSpec.earliest()), committed)
