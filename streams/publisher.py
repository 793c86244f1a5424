"""Sends a batch's outcomes (outputs and dead letters) and waits until Kafka has acknowledged every
one of them (the producer uses acks=all). Only then may the batch's input offsets be
acknowledged: that order is the at-least-once guarantee. Kafka-free: a sink is anything with
Faust's `Topic.send` signature.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

from streams.dlq import DeadLetter
from streams.handlers.common import Outcome, Output
from streams.metrics import WorkerMetrics


class Sink(Protocol):
    async def send(
        self, *, key: bytes | None = None, value: bytes | None = None, headers: Any = None
    ) -> Awaitable[Any]:
        """Hand the record to the producer; the awaitable it returns resolves on Kafka's ack."""
        ...


class Publisher:
    """`metrics` counts what Kafka acknowledged (a registry of its own when none is given)."""

    def __init__(
        self, sinks: Mapping[str, Sink], stats: Counter[str], metrics: WorkerMetrics | None = None
    ) -> None:
        self._sinks = sinks
        self._stats = stats
        self._metrics = metrics or WorkerMetrics()

    async def publish(self, outcomes: Sequence[Outcome]) -> None:
        """Send `outcomes` and return once Kafka has acknowledged all of them; raise if any send
        fails. Records of different keys are sent concurrently; those of one topic and key one
        after another, in order, so their order in the partition is the order given."""
        lanes: dict[tuple[str, bytes | None], list[Outcome]] = {}
        for outcome in outcomes:
            key = outcome.key.encode() if isinstance(outcome, Output) else outcome.key
            lanes.setdefault((outcome.topic, key), []).append(outcome)
        handed = await asyncio.gather(*(self._send_in_order(lane) for lane in lanes.values()))
        await asyncio.gather(*(ack for acks in handed for ack in acks))
        self._metrics.published(outcomes)

    async def _send_in_order(self, lane: list[Outcome]) -> list[Awaitable[Any]]:
        return [await self._send(outcome) for outcome in lane]

    async def _send(self, outcome: Outcome) -> Awaitable[Any]:
        sink = self._sinks[outcome.topic]
        if isinstance(outcome, DeadLetter):
            ack = await sink.send(key=outcome.key, value=outcome.value, headers=outcome.headers)
            self._stats[f"dlq:{outcome.topic}"] += 1
        else:
            ack = await sink.send(key=outcome.key.encode(), value=outcome.value, headers=outcome.headers)
            self._stats[f"out:{outcome.topic}"] += 1
        return ack
