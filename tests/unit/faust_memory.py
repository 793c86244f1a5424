"""Real Faust apps driven in memory, with no broker: the worker's own `faust.App` configuration,
and records handed to the streams the
way the consumer hands them (the topic conductor). Only what would cross the network is left
out, so tests of streams.faust_compat run against the real classes of the installed versions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path

import faust
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.app import new_faust_app
from streams.settings import Settings

PARTITIONS = 4


def worker_settings(datadir: Path) -> Settings:
    return Settings(datadir=datadir, partitions=PARTITIONS, kafka_bootstrap="127.0.0.1:1")


def worker_app(datadir: Path) -> faust.App:
    """A faust.App exactly as the worker configures it (streams.app.new_faust_app)."""
    return new_faust_app(worker_settings(datadir))


def message(
    app: faust.App, topic: str, partition: int, offset: int, value: bytes = b"{}", key: bytes = b"key"
) -> ConsumerMessage:
    """A record as the consumer builds it from a fetch, in the app's current generation."""
    return ConsumerMessage(
        topic, partition, offset, 0.0, 0, [], key, value, None, generation_id=app.consumer_generation_id
    )


async def deliver(app: faust.App, messages: Iterable[ConsumerMessage]) -> None:
    """Hand records to the streams subscribed to their topics, through the topic conductor's
    `on_message`, which is what the consumer calls for every fetched record (it takes one
    reference on the message per stream). The agents must be started."""
    app.flow_control.resume()  # Faust suspends it until the first assignment completes
    await app.topics._update_indices()  # the conductor's subscriber task does this at start
    pending = list(messages)
    await app.topics.on_partitions_assigned({TP(m.topic, m.partition) for m in pending})
    for m in pending:
        await app.topics.on_message(m)


async def eventually(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Wait for a condition of Faust's in-memory state that nothing signals (its consumer's acks,
    its recovery buffers): checked every 10 ms, for at most `within_s`."""
    for _ in range(int(within_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {within_s}s: {condition.__doc__ or condition}")
