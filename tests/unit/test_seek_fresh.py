"""The patch on Faust's seek to the committed offsets: input partitions the group never committed
are sought to their log start too, nothing else changes."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from streams.app import seek_fresh_partitions_too


class TP(NamedTuple):
    topic: str
    partition: int


class FakeThread:
    def __init__(self) -> None:
        self.to_beginning: list[tuple[TP, ...]] = []

    async def seek_to_beginning(self, *partitions: TP) -> None:
        self.to_beginning.append(partitions)


class FakeConsumer:
    """Faust's consumer as far as the patch sees it: seek_to_committed gives what aiokafka's
    does (the committed offset of every assigned partition, None where there is none)."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self._thread = FakeThread()
        self.seeks = 0

    async def seek_to_committed(self) -> dict[TP, int | None]:
        self.seeks += 1
        return self.committed


def test_never_committed_input_partitions_are_sought_to_their_log_start() -> None:
    committed = {
        TP("chat", 0): None,  # never committed
        TP("chat", 1): 0,  # committed at 0: aiokafka does not seek it either
        TP("chat", 2): 17,
        TP("app-profiles-changelog", 0): None,  # not an input: Faust's recovery owns it
    }
    consumer: Any = FakeConsumer(committed)
    seek_fresh_partitions_too(consumer, {"chat"})
    seek_fresh_partitions_too(consumer, {"chat"})  # patched once only

    result = asyncio.run(consumer.seek_to_committed())

    assert result == committed  # Faust's read offsets are set from it, unchanged
    assert consumer.seeks == 1
    assert consumer._thread.to_beginning == [(TP("chat", 0), TP("chat", 1))]


def test_nothing_to_seek_when_every_input_partition_has_a_commit() -> None:
    consumer: Any = FakeConsumer({TP("chat", 0): 3, TP("bids", 0): 1})
    seek_fresh_partitions_too(consumer, {"chat", "bids"})
    asyncio.run(consumer.seek_to_committed())
    assert consumer._thread.to_beginning == []
