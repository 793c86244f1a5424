"""The skip guard: each input partition's offsets must follow on from the last one processed, or,
after an assignment, from the group's committed offset (else the log start). Kafka-free: the app
hands in the lookups. A jump means the consumer skipped records; acking what follows would
commit them unprocessed, so the guard exits at once, committing nothing, and the restarted
worker reads them again (duplicates, not loss). See docs/design/delivery.md.

The price: input topics must not be written in Kafka transactions (a commit marker takes an
offset and looks like a skip) nor compacted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import NoReturn

log = logging.getLogger("streams.offsets")

Partition = tuple[str, int]
Offsets = Mapping[Partition, int | None]


async def assignment_starts(
    partitions: list[Partition],
    committed: Callable[[list[Partition]], Awaitable[Offsets]],
    log_starts: Callable[[list[Partition]], Awaitable[Offsets]],
    fallback: Callable[[Partition], int | None],
) -> dict[Partition, int | None]:
    """Where reading each partition must start: the group's committed offset from the broker,
    else the log start (auto_offset_reset=earliest). When the broker cannot say, `fallback`
    (the consumer's own record of the committed offset) is the best there is."""
    try:
        found = await committed(partitions)
        missing = [p for p in partitions if found[p] is None]
        earliest = await log_starts(missing) if missing else {}
        return {p: found[p] if found[p] is not None else earliest.get(p) for p in partitions}
    except Exception as exc:
        log.warning("committed offsets unavailable (%r); using the worker's", exc)
        return {p: fallback(p) for p in partitions}


class SkipGuard:
    """Checks every batch before it is processed. `expected` (the next offset of each partition)
    and `first_taken` (the first offset taken since the assignment) are what the liveness check
    reads too."""

    def __init__(
        self,
        look_up: Callable[[list[Partition]], Awaitable[dict[Partition, int | None]]],
        owned: Callable[[], Iterable[Partition]],
        exit_now: Callable[[], NoReturn],
    ) -> None:
        self._look_up = look_up  # assignment starts for these partitions (`assignment_starts`)
        self._owned = owned  # the input partitions assigned now
        self._exit_now = exit_now
        self.expected: dict[Partition, int] = {}
        self.first_taken: dict[Partition, int] = {}
        self._starts: dict[Partition, int | None] = {}
        self._lookup: asyncio.Task[None] | None = None

    async def _fill_starts(self, partitions: list[Partition]) -> None:
        self._starts.update(await self._look_up(partitions))

    async def assignment_start(self, partition: Partition) -> int | None:
        """Where reading must start after an assignment: looked up once per assignment, with
        every other owned partition that has no start yet, in one request rather than one per
        partition on the record path."""
        while partition not in self._starts:
            if self._lookup is None or self._lookup.done():
                need = [p for p in self._owned() if p not in self._starts] or [partition]
                self._lookup = asyncio.ensure_future(self._fill_starts(need))
            await asyncio.shield(self._lookup)
        return self._starts[partition]

    async def check(self, records: Sequence[tuple[str, int, int]]) -> None:
        """`records` are (topic, partition, offset) in the order taken. Exits (never returns) on
        the first one past the offset that should come next."""
        for topic, number, offset in records:
            partition = (topic, number)
            want = self.expected.get(partition)
            since = "the last record taken"
            if want is None:  # first record since the assignment
                want = await self.assignment_start(partition)
                self.first_taken[partition] = offset
                since = "the committed offset or log start"
            if want is not None and offset > want:
                log.critical(
                    "%s[%d]: got offset %d where %d was next (after %s; first taken since the "
                    "assignment: %s): the consumer skipped %d records; exiting without committing "
                    "so that a restarted worker reads them",
                    topic,
                    number,
                    offset,
                    want,
                    since,
                    self.first_taken.get(partition),
                    offset - want,
                )
                self._exit_now()
            self.expected[partition] = offset + 1

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Revoked partitions: a later assignment starts from the broker's offsets again."""
        for partition in partitions:
            self.expected.pop(partition, None)
            self.first_taken.pop(partition, None)
            self._starts.pop(partition, None)
