"""Every place the worker reaches into faust-streaming's or aiokafka's internals, and nowhere else.

Four of them change what the libraries do, to work around upstream behaviour that loses or
commits records (the incidents are in docs/design/delivery.md):
- `install_rebalance_workarounds`: Faust's flow is held from rebalance completion until its seek
  (`hold_flow_until_seek`), and that seek also covers never-committed input partitions
  (`seek_fresh_partitions_too`);
- `hold_until_published` / `release_published`: one more reference per message, so that
  `take_events` cannot ack a batch whose outputs were never delivered;
- `placed_table`: a table that computes its changelog partition itself, registered as
  `App.Table` registers one.
The others only read private state: `committed_offset`, `fetch_state`, `queue_depth`,
`active_partitions`. Two more upstream behaviours are caught rather than worked around: records
prefetched from the old position after a rebalance (faust-streaming#221) by the skip guard
(streams.offsets), and partitions that stop being fetched or committed (faust-streaming#629) by
the liveness check (streams.liveness).

They are written against faust-streaming 0.15.3 and aiokafka 0.14.0. `check_versions` refuses
to start a worker on other versions (`Settings.allow_untested_faust` overrides it), and
tests/unit/test_faust_compat.py checks each one against the real classes of those versions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

import faust
from faust.types import TP, AppT, ChannelT, ConsumerT, EventT, StreamT, TableT

from streams.errors import ConfigError

log = logging.getLogger("streams.faust_compat")

TESTED_VERSIONS = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


class UntestedFaust(ConfigError):
    """The installed faust-streaming or aiokafka is not the version the workarounds were tested on."""


def installed_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def check_versions(allow_untested: bool, installed: Callable[[str], str | None] = installed_version) -> None:
    """Raise UntestedFaust unless faust-streaming and aiokafka are the versions in TESTED_VERSIONS;
    with `allow_untested`, log a warning and carry on instead."""
    found = {package: installed(package) for package in TESTED_VERSIONS}
    if found == TESTED_VERSIONS:
        return
    found_text = ", ".join(f"{p} {v or 'not installed'}" for p, v in found.items())
    tested_text = ", ".join(f"{p} {v}" for p, v in TESTED_VERSIONS.items())
    if allow_untested:
        log.warning(
            "running on %s, not the tested %s (MS_ALLOW_UNTESTED_FAUST): the workarounds in "
            "streams.faust_compat may no longer hold",
            found_text,
            tested_text,
        )
        return
    raise UntestedFaust(
        f"found {found_text}; streams.faust_compat is tested with {tested_text} only. Run "
        "tests/unit/test_faust_compat.py and tests/integration/test_faults.py on the new versions, "
        "then update TESTED_VERSIONS, or set MS_ALLOW_UNTESTED_FAUST=true to start anyway"
    )


# --- behaviour-changing workarounds -----------------------------------------------------------


def seek_fresh_partitions_too(consumer: ConsumerT, inputs: Collection[str]) -> None:
    """Make Faust's seek to the committed offsets also seek the partitions of `inputs` that the
    group never committed, to their log start (what auto_offset_reset=earliest means), read as an
    offset and sought to, so the consumer's position is valid at once. Patches
    the consumer once; later calls do nothing.

    Works around aiokafka's `AIOKafkaConsumer.seek_to_committed`, which leaves a partition
    without a committed offset (None, or 0) where it is, combined with Faust's
    `Consumer.perform_seek`, which relies on that seek to re-read records it dropped while its
    flow was stopped."""
    patched: Any = consumer
    if getattr(patched, "_ms_seeks_fresh", False):
        return
    seek_to_committed = patched.seek_to_committed  # ThreadDelegateConsumer's, awaited by perform_seek

    async def seek_all_to_committed() -> Mapping[Any, int]:
        committed = await seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if not offset and tp.topic in inputs]
        if fresh:
            # Seek to the log start as a concrete offset: `seek_to_beginning` leaves the position
            # unset until the next fetch resolves it, and Faust's commit-livelock check
            # (`_verify_aiokafka_event_path`) reads that position meanwhile and fails an assert
            # in aiokafka: a restarted worker crashed once that way, soon after its first rebalance.
            start = await patched._thread.earliest_offsets(*fresh)
            await patched._thread.seek_wait(start)
            log.info(
                "never committed, so read from the log start: %s",
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(fresh)),
            )
        return cast(Mapping[Any, int], committed)

    patched.seek_to_committed = seek_all_to_committed
    patched._ms_seeks_fresh = True


def hold_flow_until_seek(app: AppT) -> None:
    """Stop the consumer's flow when a rebalance completes; Faust resumes it after its seek.

    Works around `Recovery._resume_streams` (faust-streaming 0.15.3), which resumes the stream
    partitions and only then seeks them to the committed offsets, with the flow still on from
    reading the changelogs: records fetched from before the seek would be delivered. Records a
    fetch returns while the flow is stopped are dropped instead, and the seek reads them again."""

    async def stop_flow(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        app.consumer.stop_flow()

    app.on_rebalance_complete.connect(stop_flow)


def install_rebalance_workarounds(app: AppT, inputs: Collection[str]) -> None:
    """Both rebalance workarounds: the flow held until the seek, and that seek covering the
    never-committed partitions of `inputs` (patched on the first assignment, when the consumer
    exists)."""
    hold_flow_until_seek(app)

    async def patch_seek(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        seek_fresh_partitions_too(app.consumer, inputs)

    app.on_partitions_assigned.connect(patch_seek)


def hold_until_published(events: Sequence[EventT]) -> None:
    """Take one more reference on each event's message, so that a batch is acknowledged only by
    `release_published` as well. Works around `Stream.take_events`, which acks its buffer in a
    `finally`, also when the loop body raised or was cancelled."""
    for event in events:
        event.message.incref()


def release_published(events: Sequence[EventT]) -> None:
    """Drop the reference `hold_until_published` took: the events' outputs are delivered.
    take_events' own ack, after the loop body, then makes each ack final."""
    for event in events:
        event.ack()


class PlacedTable(faust.Table):
    """A table that puts each key's changelog record on the partition `place(key bytes)` names.

    Overrides `Collection.partition_for_key`: with `use_partitioner=True` Faust asks the producer,
    which raises TypeError until it has fetched the changelog topic's metadata, and without it
    Faust takes the partition of the current event, which a timer does not have."""

    def __init__(self, app: AppT, *, place: Callable[[bytes], int], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._place = place

    def partition_for_key(self, key: Any) -> int | None:
        return self._place(key if isinstance(key, bytes) else str(key).encode())


def placed_table(app: AppT, name: str, partitions: int, place: Callable[[bytes], int]) -> TableT:
    """A bytes-keyed PlacedTable registered with the app, as `App.Table` registers its own class
    (with the table manager's beacon)."""
    table = PlacedTable(
        app, name=name, partitions=partitions, key_type=bytes, place=place, beacon=app.tables.beacon
    )
    app.tables.add(table)
    return cast(TableT, table)


# --- read-only views of private state ---------------------------------------------------------


def committed_offset(consumer: ConsumerT, tp: TP) -> int | None:
    """Faust's own record of the partition's committed offset (`Consumer._committed_offset`):
    its public API has none. None until Faust's first seek or commit for the partition."""
    return cast(int | None, getattr(consumer, "_committed_offset", {}).get(tp))


def fetch_state(consumer: ConsumerT, tp: TP) -> str:
    """Whether Faust fetches the partition and why not, for the liveness log: its private active,
    paused and buffered partition sets, its flow and its read offset, read defensively."""
    active = getattr(consumer, "_active_partitions", None) or set()
    return (
        f"fetching {'on' if tp in active else 'off'}"
        f" (paused {tp in getattr(consumer, '_paused_partitions', ())},"
        f" buffer full {tp in getattr(consumer, '_buffered_partitions', ())}),"
        f" flow {'on' if getattr(consumer, 'flow_active', None) else 'off'},"
        f" read offset {getattr(consumer, '_read_offset', {}).get(tp)}"
    )


def queue_depth(stream: StreamT) -> Callable[[], int]:
    """How many records wait in the stream's channel queue (the `ChannelT` protocol has no queue)."""
    return cast(ChannelT, stream.channel).queue.qsize


def active_partitions(app: AppT, topic: str) -> frozenset[int]:
    """The partitions of `topic` this worker is active for; none while a rebalance is under way.

    A table's memory store also holds the standby copies of other workers' partitions: Faust's
    `Recovery` applies standby changelog records to the same dict (`Store.apply_changelog_batch`)
    and keeps reading them after recovery. Whatever iterates a table must keep to these."""
    if app.rebalancing:
        return frozenset()
    return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)
