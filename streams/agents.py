"""The batch agent: one per input topic. It takes records in batches, checks their offsets, runs
the route's pipeline, publishes the outcomes and only then acknowledges the inputs. Records are
raw bytes, so nothing inside Faust can fail on bad input: decoding is the pipeline's, and every
record ends as outputs or a dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import EventT, StreamT

from streams.dlq import RecordMeta
from streams.faust_compat import hold_until_published, queue_depth, release_published
from streams.handlers.common import Context
from streams.metrics import WorkerMetrics
from streams.offsets import SkipGuard
from streams.pii import redact
from streams.pipeline import Route, process
from streams.publisher import Publisher

log = logging.getLogger("streams.agents")

AgentFn = Callable[[StreamT], Any]


def meta_of(event: EventT) -> RecordMeta:
    msg = event.message
    key = msg.key if isinstance(msg.key, bytes | type(None)) else str(msg.key).encode()
    raw_headers: Any = msg.headers.items() if isinstance(msg.headers, dict) else (msg.headers or [])
    headers = [(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in raw_headers]
    timestamp_ms = int(msg.timestamp * 1000) if msg.timestamp else None
    return RecordMeta(msg.topic, msg.partition, msg.offset, key, headers, timestamp_ms)


@dataclass
class Activity:
    """What each agent is doing, for the liveness log."""

    busy: dict[str, float] = field(default_factory=dict)  # agent -> when its current batch began
    queued: dict[str, Callable[[], int]] = field(default_factory=dict)  # agent -> records queued

    def describe(self, route: str) -> str:
        began = self.busy.get(route)
        depth = self.queued[route]() if route in self.queued else "?"
        doing = f"in a batch for {time.monotonic() - began:.0f}s" if began else "waiting for records"
        return f"{route} agent: {depth} records queued, {doing}"


@dataclass(frozen=True)
class AgentParts:
    """What every batch agent shares."""

    ctx: Context
    guard: SkipGuard
    publisher: Publisher
    activity: Activity
    stats: Counter[str]
    stop: Callable[[BaseException], None]  # stops the worker loudly (streams.shutdown)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)


def batch_agent(route: Route, parts: AgentParts, batch_size: int, within_s: float) -> AgentFn:
    """The agent for one input topic, to be registered with `app.agent`."""

    async def fail(events: Sequence[EventT], exc: Exception) -> None:
        """Something no record can be blamed for (Triton down past the retry budget, Kafka
        refusing our outputs, a bug outside the handlers): stop the worker loudly without
        acknowledging the batch, so a restarted worker processes it again. Never returns."""
        first = meta_of(events[0])
        log.critical(
            "%s: cannot process the batch from %s[%d]@%d (%s); stopping the worker, the batch is not committed",
            route.name,
            first.topic,
            first.partition,
            first.offset,
            redact(repr(exc)),
        )
        parts.stop(exc)
        await asyncio.Event().wait()

    async def agent(stream: StreamT) -> None:
        assert isinstance(stream, faust.Stream)  # take_events is on the class, not the protocol
        parts.activity.queued[route.name] = queue_depth(stream)
        async for events in stream.take_events(batch_size, within=within_s):
            parts.activity.busy[route.name] = time.monotonic()
            hold_until_published(events)
            await parts.guard.check(
                [(e.message.topic, e.message.partition, e.message.offset) for e in events]
            )
            done = parts.metrics.batch(route.name, events[0].message.topic, len(events))
            try:
                batch = [(meta_of(e), e.value) for e in events]
                await parts.publisher.publish(await process(batch, route, parts.ctx))
            except Exception as exc:
                await fail(events, exc)
            release_published(events)
            done()
            parts.stats[f"in:{route.name}"] += len(batch)
            del parts.activity.busy[route.name]

    agent.__name__ = agent.__qualname__ = f"{route.name}_agent"
    return agent
