"""The skip guard (pure logic): offsets must follow on from the last one taken, or after an
assignment from the broker's committed offset, else the log start."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import NoReturn

import pytest

from streams.offsets import Offsets, Partition, SkipGuard, assignment_starts


class Skipped(Exception):
    pass


def exit_now() -> NoReturn:
    raise Skipped


class Broker:
    def __init__(self, committed: dict[Partition, int | None], log_starts: dict[Partition, int]) -> None:
        self._committed = committed
        self._log_starts = log_starts
        self.requests: list[list[Partition]] = []
        self.down = False

    async def committed(self, partitions: list[Partition]) -> Offsets:
        self.requests.append(partitions)
        await asyncio.sleep(0)  # a round trip: other agents run meanwhile
        if self.down:
            raise ConnectionError("broker away")
        return {p: self._committed.get(p) for p in partitions}

    async def log_starts(self, partitions: list[Partition]) -> Offsets:
        return {p: self._log_starts[p] for p in partitions}


def guard_for(broker: Broker, owned: list[Partition], worker_view: int | None = None) -> SkipGuard:
    look_up = partial(
        assignment_starts,
        committed=broker.committed,
        log_starts=broker.log_starts,
        fallback=lambda p: worker_view,
    )
    return SkipGuard(look_up, lambda: owned, exit_now)


CHAT0, CHAT1 = ("chat", 0), ("chat", 1)


async def test_contiguous_offsets_from_the_committed_offset_pass() -> None:
    guard = guard_for(Broker({CHAT0: 5}, {}), [CHAT0])
    await guard.check([("chat", 0, 5), ("chat", 0, 6)])
    await guard.check([("chat", 0, 7)])
    assert guard.expected[CHAT0] == 8 and guard.first_taken[CHAT0] == 5


async def test_a_jump_past_the_committed_offset_exits() -> None:
    guard = guard_for(Broker({CHAT0: 0}, {}), [CHAT0])
    with pytest.raises(Skipped):
        await guard.check([("chat", 0, 1)])  # chat[0]: got offset 1 where 0 was next


async def test_a_jump_within_an_assignment_exits() -> None:
    guard = guard_for(Broker({CHAT0: 0}, {}), [CHAT0])
    await guard.check([("chat", 0, 0), ("chat", 0, 1)])
    with pytest.raises(Skipped):
        await guard.check([("chat", 0, 49)])


async def test_a_never_committed_partition_starts_at_its_log_start() -> None:
    guard = guard_for(Broker({CHAT0: None}, {CHAT0: 3}), [CHAT0])
    with pytest.raises(Skipped):
        await guard.check([("chat", 0, 4)])
    guard = guard_for(Broker({CHAT0: None}, {CHAT0: 3}), [CHAT0])
    await guard.check([("chat", 0, 3)])


async def test_one_lookup_per_assignment_for_every_owned_partition() -> None:
    broker = Broker({CHAT0: 0, CHAT1: 10}, {})
    guard = guard_for(broker, [CHAT0, CHAT1])
    await asyncio.gather(guard.check([("chat", 0, 0)]), guard.check([("chat", 1, 10)]))
    await guard.check([("chat", 1, 11)])
    assert broker.requests == [[CHAT0, CHAT1]]


async def test_the_workers_view_stands_in_when_the_broker_is_away() -> None:
    broker = Broker({CHAT0: 0}, {})
    broker.down = True
    guard = guard_for(broker, [CHAT0], worker_view=7)
    with pytest.raises(Skipped):
        await guard.check([("chat", 0, 8)])


async def test_a_revoked_partition_starts_again_from_the_broker() -> None:
    broker = Broker({CHAT0: 0}, {})
    guard = guard_for(broker, [CHAT0])
    await guard.check([("chat", 0, 0)])
    guard.forget([CHAT0])
    assert CHAT0 not in guard.expected and CHAT0 not in guard.first_taken
    broker._committed[CHAT0] = 40  # another worker processed and committed up to 40 meanwhile
    await guard.check([("chat", 0, 40)])
    assert len(broker.requests) == 2
