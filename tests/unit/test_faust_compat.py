"""Each reach into Faust's and aiokafka's internals (streams.faust_compat), checked against the real
classes of the installed versions, driven in memory (tests/unit/faust_memory.py). Where a test
pins the upstream behaviour a workaround exists for, it says so: when an upgrade makes that test
fail, the workaround may no longer be needed, or may no longer work."""

from __future__ import annotations

import asyncio
import inspect
import logging
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from streams.faust_compat import (
    TESTED_VERSIONS,
    UntestedFaust,
    active_partitions,
    check_versions,
    committed_offset,
    fetch_state,
    hold_until_published,
    install_rebalance_workarounds,
    placed_table,
    queue_depth,
    release_published,
)
from streams.settings import Settings
from streams.tables import key_partition
from tests.unit.faust_memory import (
    PARTITIONS,
    deliver,
    eventually,
    message,
    replay_changelog,
    two_workers,
    worker_app,
)

# --- versions ---------------------------------------------------------------------------------


def test_the_installed_versions_are_the_tested_ones() -> None:
    check_versions(allow_untested=False)  # the lock file pins what the workarounds were tested on


def test_an_untested_version_is_refused_with_both_versions_named() -> None:
    found = {"faust-streaming": "0.16.0", "aiokafka": "0.14.0"}
    with pytest.raises(UntestedFaust) as refused:
        check_versions(allow_untested=False, installed=found.get)
    text = str(refused.value)
    assert "found faust-streaming 0.16.0, aiokafka 0.14.0" in text
    assert "tested with faust-streaming 0.15.3, aiokafka 0.14.0" in text
    assert "MS_ALLOW_UNTESTED_FAUST" in text


def test_a_missing_package_is_refused_too() -> None:
    found = {"faust-streaming": "0.15.3"}
    with pytest.raises(UntestedFaust, match="aiokafka not installed"):
        check_versions(allow_untested=False, installed=found.get)


def test_the_override_runs_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    found = {**TESTED_VERSIONS, "aiokafka": "0.15.0"}
    with caplog.at_level(logging.WARNING, logger="streams.faust_compat"):
        check_versions(allow_untested=True, installed=found.get)
    assert "aiokafka 0.15.0" in caplog.text and "not the tested" in caplog.text


def test_the_override_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().allow_untested_faust is False
    monkeypatch.setenv("MS_ALLOW_UNTESTED_FAUST", "true")
    assert Settings().allow_untested_faust is True


# --- the seek covers never-committed partitions -----------------------------------------------


async def test_aiokafka_seek_to_committed_leaves_never_committed_partitions_alone() -> None:
    """The upstream behaviour: aiokafka seeks only partitions with a committed offset above 0."""
    consumer = AIOKafkaConsumer(group_id="g", bootstrap_servers="127.0.0.1:1")
    committed = {
        TopicPartition("chat", 0): None,
        TopicPartition("chat", 1): 0,
        TopicPartition("chat", 2): 17,
    }
    sought: list[tuple[TopicPartition, int]] = []

    class Fetcher:
        def seek_to(self, tp: TopicPartition, offset: int) -> None:
            sought.append((tp, offset))

        async def close(self) -> None:
            return None

    async def committed_of(tp: TopicPartition) -> int | None:
        return committed[tp]

    consumer.assign(list(committed))
    consumer._fetcher = Fetcher()
    consumer.committed = committed_of  # the broker's answer
    try:
        assert await consumer.seek_to_committed() == committed
    finally:
        await consumer.stop()
    assert sought == [(TopicPartition("chat", 2), 17)]


def test_faust_consumer_thread_still_has_the_calls_the_workaround_makes() -> None:
    earliest = AIOKafkaConsumerThread.earliest_offsets
    assert inspect.iscoroutinefunction(earliest)
    assert [p.kind for p in inspect.signature(earliest).parameters.values()][1:] == [
        inspect.Parameter.VAR_POSITIONAL
    ]
    seek_wait = AIOKafkaConsumerThread.seek_wait
    assert inspect.iscoroutinefunction(seek_wait)
    assert list(inspect.signature(seek_wait).parameters)[1:] == ["partitions"]


LOG_START = 5  # the log start after retention deleted the first records


class ThreadCalls:
    """Faust's consumer thread, where the aiokafka consumer would be called, as a recorder; every
    Faust method above it is the real one."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.seeks_to_committed = 0
        self.asked_start: list[tuple[TP, ...]] = []
        self.sought: list[dict[TP, int]] = []
        self.flow_at_seek: list[bool] = []

    def install(self, app: faust.App, monkeypatch: pytest.MonkeyPatch) -> None:
        thread: Any = app.consumer._thread
        consumer = app.consumer

        async def seek_to_committed() -> dict[TP, int | None]:
            self.seeks_to_committed += 1
            self.flow_at_seek.append(consumer.flow_active)
            return self.committed

        async def earliest_offsets(*partitions: TP) -> dict[TP, int]:
            self.asked_start.append(partitions)
            return {tp: LOG_START for tp in partitions}

        async def seek_wait(partitions: dict[TP, int]) -> None:
            self.sought.append(dict(partitions))

        monkeypatch.setattr(thread, "seek_to_committed", seek_to_committed)
        monkeypatch.setattr(thread, "earliest_offsets", earliest_offsets)
        monkeypatch.setattr(thread, "seek_wait", seek_wait)
        monkeypatch.setattr(thread, "assignment", lambda: set(self.committed))


async def test_faust_seek_reads_never_committed_input_partitions_from_the_log_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = worker_app(tmp_path)
    committed: dict[TP, int | None] = {
        TP("chat", 0): None,  # never committed
        TP("chat", 1): 0,  # committed at 0: aiokafka does not seek it either
        TP("chat", 2): 17,
        TP("marketing-scorer-profiles-changelog", 0): None,  # not an input: Faust's recovery owns it
    }
    calls = ThreadCalls(committed)
    calls.install(app, monkeypatch)
    install_rebalance_workarounds(app, {"chat"})
    await app.on_partitions_assigned.send(set(committed))
    await app.on_partitions_assigned.send(set(committed))  # patched once only

    await app.consumer.perform_seek()

    assert calls.seeks_to_committed == 1
    assert calls.asked_start == [(TP("chat", 0), TP("chat", 1))]
    # sought to the log start as concrete offsets, so the position is valid at once
    assert calls.sought == [{TP("chat", 0): LOG_START, TP("chat", 1): LOG_START}]
    assert committed_offset(app.consumer, TP("chat", 2)) == 17  # Faust's bookkeeping unchanged
    assert committed_offset(app.consumer, TP("chat", 0)) is None


async def test_nothing_to_seek_when_every_input_partition_has_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = worker_app(tmp_path)
    calls = ThreadCalls({TP("chat", 0): 3, TP("bids", 0): 1})
    calls.install(app, monkeypatch)
    install_rebalance_workarounds(app, {"chat", "bids"})
    await app.on_partitions_assigned.send(set(calls.committed))
    await app.consumer.perform_seek()
    assert calls.asked_start == [] and calls.sought == []


# --- the flow is held until the seek ----------------------------------------------------------


async def test_faust_resumes_streams_with_the_flow_on_unless_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's real end of a rebalance (Recovery._resume_streams): resume the stream partitions,
    seek, resume the flow. Upstream, the flow is on during that seek; held, it is off, and Faust
    turns it back on afterwards."""
    for held in (False, True):
        app = worker_app(tmp_path / str(held))
        calls = ThreadCalls({TP("chat", 0): 5})
        calls.install(app, monkeypatch)
        monkeypatch.setattr(app._fetcher, "maybe_start", _nothing)
        if held:
            install_rebalance_workarounds(app, {"chat"})
        assert app.consumer.flow_active  # on, as after changelog reading

        await app.tables.recovery._resume_streams(generation_id=app.consumer_generation_id)

        assert calls.flow_at_seek == [not held]
        assert app.consumer.flow_active


async def _nothing() -> None:
    return None


# --- a batch is acked only once its outputs are -----------------------------------------------


@pytest.mark.parametrize("held", [False, True])
async def test_take_events_acks_a_failed_batch_unless_it_is_held(tmp_path: Path, held: bool) -> None:
    """Upstream, take_events acks its batch when the agent is stopped in the middle of it (a
    failed batch waits there for the worker to stop), and the offsets become committable."""
    app = worker_app(tmp_path)
    topic = app.topic("chat", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    inside = asyncio.Event()

    async def failing_agent(stream: Any) -> None:
        async for events in stream.take_events(2, within=0.05):
            if held:
                hold_until_published(events)
            inside.set()
            await asyncio.Event().wait()  # stopped here, as a failed batch is

    agent = app.agent(topic, name="failing")(failing_agent)
    await agent.start()
    records = [message(app, "chat", 0, offset) for offset in range(2)]
    await deliver(app, records)
    await asyncio.wait_for(inside.wait(), 10)
    await agent.stop()

    assert [m.acked for m in records] == [not held, not held]
    acked: Any = app.consumer._acked  # what the next commit may take
    assert list(acked.get(TP("chat", 0), [])) == ([] if held else [0, 1])


async def test_a_released_batch_is_acked_by_take_events(tmp_path: Path) -> None:
    app = worker_app(tmp_path)
    topic = app.topic("chat", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    done = asyncio.Event()
    refs: list[list[int]] = []

    async def agent_fn(stream: Any) -> None:
        async for events in stream.take_events(2, within=0.05):
            hold_until_published(events)
            release_published(events)
            refs.append([e.message.refcount for e in events])
            done.set()

    agent = app.agent(topic, name="ok")(agent_fn)
    await agent.start()
    records = [message(app, "chat", 0, offset) for offset in range(2)]
    await deliver(app, records)
    await asyncio.wait_for(done.wait(), 10)
    await eventually(lambda: all(m.acked for m in records))  # take_events acks after the loop body
    await agent.stop()
    assert refs == [[1, 1]]  # only take_events' own reference left before its ack


# --- tables place their own changelog records -------------------------------------------------


async def test_a_placed_table_puts_a_timers_write_on_the_keys_partition(tmp_path: Path) -> None:
    app = worker_app(tmp_path)
    table = placed_table(app, "brand-windows", PARTITIONS, lambda key: key_partition(key, PARTITIONS))
    assert app.tables["brand-windows"] is table
    table[b"acme"] = {"volume": 1}  # outside any stream, as the brand-flush timer writes
    [sent] = _changelog_records(app)
    assert (sent.key, sent.partition) == (b"acme", key_partition(b"acme", PARTITIONS))


async def test_faust_tables_cannot_be_written_from_a_timer(tmp_path: Path) -> None:
    """Upstream: without a partitioner Faust takes the current event's partition, and a timer has
    none."""
    app = worker_app(tmp_path)
    table = app.Table("plain", partitions=PARTITIONS, key_type=bytes)
    with pytest.raises(TypeError, match="outside of stream iteration"):
        table[b"acme"] = {"volume": 1}


def _changelog_records(app: faust.App) -> list[Any]:
    pending: Any = app.producer.buffer.pending  # table writes wait here for the producer
    return [pending.get_nowait().message for _ in range(pending.qsize())]


# --- standby copies and active partitions -----------------------------------------------------


async def test_standby_changelog_records_land_in_the_table_the_worker_iterates(tmp_path: Path) -> None:
    """Upstream: Faust's recovery applies standby changelog records to the same memory store as
    the active ones, and keeps doing so after recovery. A key of another worker's partition is
    then iterated like the worker's own."""
    apps, _ = two_workers(tmp_path)
    table = apps["a"].tables["brand-windows"]
    ours = _key_in(active_partitions(apps["a"], "social-scored"))
    theirs = _key_in(active_partitions(apps["b"], "social-scored"))
    value = orjson.dumps({"volume": 1})
    await replay_changelog(
        apps["a"], table, [(key_partition(k, PARTITIONS), k, value) for k in (ours, theirs)]
    )
    assert sorted(table) == sorted([ours, theirs])


def _key_in(partitions: frozenset[int]) -> bytes:
    return next(
        k for k in (f"brand-{i}".encode() for i in range(100)) if key_partition(k, PARTITIONS) in partitions
    )


def test_active_partitions_come_from_faust_assignment(tmp_path: Path) -> None:
    apps, _ = two_workers(tmp_path)
    mine, theirs = (
        active_partitions(apps["a"], "social-scored"),
        active_partitions(apps["b"], "social-scored"),
    )
    assert mine and theirs and mine | theirs == set(range(PARTITIONS)) and not mine & theirs
    standbys = {tp.partition for tp in apps["a"].assignor.assigned_standbys()}
    assert standbys == set(theirs)  # the default table_standby_replicas=1: a copies b's partitions

    apps["a"].on_rebalance_start()
    assert active_partitions(apps["a"], "social-scored") == frozenset()  # ownership is moving
    apps["a"].on_rebalance_end()
    assert active_partitions(apps["a"], "social-scored") == mine


# --- read-only views --------------------------------------------------------------------------


async def test_the_liveness_views_read_faust_state(tmp_path: Path) -> None:
    app = worker_app(tmp_path)
    consumer: Any = app.consumer
    tp = TP("chat", 0)
    assert committed_offset(consumer, tp) is None
    consumer._committed_offset[tp] = 12
    consumer._read_offset[tp] = 15
    consumer.pause_partitions([tp])
    consumer.stop_flow()
    assert committed_offset(consumer, tp) == 12
    assert fetch_state(consumer, tp) == (
        "fetching off (paused True, buffer full False), flow off, read offset 15"
    )
    consumer.resume_partitions([tp])
    assert fetch_state(consumer, tp).startswith("fetching on (paused False")

    stream = app.stream(app.channel())
    assert queue_depth(stream)() == 0
