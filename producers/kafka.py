"""Producing to Kafka with librdkafka: idempotent, acks=all, murmur2 partitioning, delivery reports.

`partitioner=murmur2_random` matters: it is the Java client's (and aiokafka's) partitioner, so a
key lands on the same partition number in every topic whichever client wrote it, which is what
keeps a user's clicks, posts and bids with the worker that holds their profile.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from streams.settings import Settings

PRODUCER_CONFIG = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 5,
}


@dataclass
class DeliveryReport:
    delivered: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> str:
        total = sum(self.delivered.values())
        per_topic = ", ".join(f"{t}={n}" for t, n in sorted(self.delivered.items()))
        rate = total / self.elapsed_s if self.elapsed_s else 0.0
        line = f"delivered {total} records in {self.elapsed_s:.1f}s ({rate:.0f}/s): {per_topic}"
        if self.errors:
            line += f"; FAILED {self.failed}: " + ", ".join(f"{e}={n}" for e, n in self.errors.items())
        return line


class Outgoing(Protocol):
    """What `produce` sends: a `Produced` event, or a hostile corpus `Case` (null values, headers)."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer(settings.confluent_config(**{**PRODUCER_CONFIG, **overrides}))


def produce(
    settings: Settings,
    records: Sequence[Outgoing],
    *,
    rate: float = 0.0,
    progress: bool = False,
    console: Console | None = None,
    flush_timeout_s: float = 30.0,
    producer_config: Mapping[str, Any] | None = None,
    producer: Producer | None = None,
) -> DeliveryReport:
    """Send `records` (topic names get the settings' prefix) and wait for every delivery report.
    `producer_config` overrides librdkafka settings (the hostile corpus raises message.max.bytes).
    `producer` reuses a client that is already connected: a new idempotent one spends its first
    0.5-1 s getting a producer id from the broker, and its first records wait that long."""
    report = DeliveryReport()
    if producer is None:
        producer = make_producer(settings, **(producer_config or {}))
    elif producer_config:
        raise ValueError("producer_config configures a new producer; pass one or the other")
    bar = Progress(
        TextColumn("[bold]producing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not progress,
        transient=False,
    )

    with bar:
        task = bar.add_task("produce", total=len(records), rate="")

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                report.errors[err.name()] += 1
            else:
                report.delivered[msg.topic() or "?"] += 1
            bar.advance(task)

        start = time.monotonic()
        for i, record in enumerate(records):
            if rate > 0:
                # poll() returns as soon as a delivery report is served, so loop until the slot
                while (ahead := start + i / rate - time.monotonic()) > 0:
                    producer.poll(ahead)
            while True:
                try:
                    producer.produce(
                        settings.topics.name(record.topic),
                        key=record.key,
                        value=record.value,
                        headers=list(record.headers) or None,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:  # local queue full: serve delivery reports, then try again
                    producer.poll(0.1)
            producer.poll(0)
            if i % 50 == 0:
                elapsed = time.monotonic() - start
                bar.update(task, rate=f"{i / elapsed:.0f}/s" if elapsed > 0 else "")
        remaining = producer.flush(flush_timeout_s)
        report.elapsed_s = time.monotonic() - start
        if remaining:
            report.errors["not_delivered_before_timeout"] += remaining
    return report
