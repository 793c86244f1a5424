"""Real Faust apps driven in memory, with no broker: the worker's own `faust.App` configuration,
Faust's real partition assignor for a group of workers, and records handed to the streams the
way the consumer hands them (the topic conductor). Only what would cross the network is left
out, so tests of streams.faust_compat run against the real classes of the installed versions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import faust
from aiokafka.cluster import ClusterMetadata
from aiokafka.protocol.metadata import MetadataResponse_v0
from faust.types import TP, TableT
from faust.types.tuples import ConsumerMessage

from streams.app import new_faust_app
from streams.settings import Settings
from streams.tables import Tables, make_tables

PARTITIONS = 4


def worker_settings(datadir: Path) -> Settings:
    return Settings(datadir=datadir, partitions=PARTITIONS, kafka_bootstrap="127.0.0.1:1")


def worker_app(datadir: Path) -> faust.App:
    """A faust.App exactly as the worker configures it (streams.app.new_faust_app)."""
    return new_faust_app(worker_settings(datadir))


def assign(apps: Mapping[str, faust.App], topics: Iterable[str]) -> None:
    """Assign every partition of `topics` to the `apps` as one consumer group, with Faust's own
    PartitionAssignor (standby replicas included), as the group leader and coordinator would."""
    subscribed = set(topics)
    cluster = ClusterMetadata()
    cluster.update_metadata(
        MetadataResponse_v0(
            brokers=[(0, "localhost", 9092)],
            topics=[(0, t, [(0, p, 0, [0], [0]) for p in range(PARTITIONS)]) for t in sorted(subscribed)],
        )
    )
    leader = next(iter(apps.values()))
    members = {name: app.assignor.metadata(subscribed) for name, app in apps.items()}
    for name, assignment in leader.assignor.assign(cluster, members).items():
        apps[name].assignor.on_assignment(assignment)


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


def two_workers(datadir: Path) -> tuple[dict[str, faust.App], dict[str, Tables]]:
    """Two workers of one group with the worker's tables (streams.tables), every partition of the
    tables' changelogs and the social-scored topic assigned by Faust's assignor."""
    settings = worker_settings(datadir)
    apps = {name: worker_app(datadir / name) for name in ("a", "b")}
    tables = {name: make_tables(app, settings) for name, app in apps.items()}
    assign(apps, {settings.topics.social_scored, *apps["a"].tables.changelog_topics})
    return apps, tables


async def replay_changelog(
    app: faust.App, table: TableT, records: Sequence[tuple[int, bytes, bytes]]
) -> None:
    """Feed (partition, key, value) changelog records through the app's real Recovery service,
    after recovery completed, as the consumer does while it keeps reading the active and standby
    changelog partitions the assignor gave the worker (Recovery.on_rebalance registers them)."""
    recovery = app.tables.recovery
    changelog = table.changelog_topic.get_topic_name()
    actives = {tp for tp in app.assignor.assigned_actives() if tp.topic == changelog}
    standbys = {tp for tp in app.assignor.assigned_standbys() if tp.topic == changelog}
    for tp in actives:
        recovery.add_active(table, tp)
    for tp in standbys:
        recovery.add_standby(table, tp)
    app.flow_control.resume()
    await recovery.start()
    try:
        await table.on_recovery_completed(actives, standbys)
        for offset, (partition, key, value) in enumerate(records):
            record = message(app, changelog, partition, offset, value, key)
            await app.tables.changelog_queue.put(await table.changelog_topic.decode(record))

        def applied() -> bool:  # the recovery task applies what it has read when its buffer is flushed
            recovery.flush_buffers()
            return all(key in table for _, key, _ in records)

        await eventually(applied)
    finally:
        await recovery.stop()


async def eventually(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Wait for a condition of Faust's in-memory state that nothing signals (its consumer's acks,
    its recovery buffers): checked every 10 ms, for at most `within_s`."""
    for _ in range(int(within_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {within_s}s: {condition.__doc__ or condition}")
