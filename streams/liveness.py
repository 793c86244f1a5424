"""Is the worker still moving? A stall detector for consumers that stop silently. Pure logic.

Faust consumers have been seen to stop fetching, or an agent to stop processing, without any
error. Every few seconds the worker reports, for each partition it owns, the broker's high
watermark, the consumer's fetch position and the next offset after the last record it finished.
A partition stalls when input is waiting (high watermark beyond what was processed) and neither
the fetch position nor the processed offset has moved for `stall_s`. A partition with nothing
waiting never stalls, however long it is quiet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Partition = tuple[str, int]


@dataclass(frozen=True)
class Stall:
    partition: Partition
    waiting: int  # records past the processed offset
    seconds: float  # since the last movement

    def __str__(self) -> str:
        topic, number = self.partition
        return f"{topic}[{number}]: {self.waiting} records waiting, no progress for {self.seconds:.0f}s"


@dataclass
class LivenessCheck:
    stall_s: float
    _seen: dict[Partition, tuple[tuple[int | None, int | None], float]] = field(default_factory=dict)

    def observe(
        self,
        partition: Partition,
        highwater: int | None,
        position: int | None,
        processed: int | None,
        now: float,
    ) -> Stall | None:
        """`processed` is the next offset after the last finished record (None: none yet since
        the partition was assigned); `position` the consumer's next fetch offset."""
        marker = (position, processed)
        last = self._seen.get(partition)
        if last is None or last[0] != marker:
            self._seen[partition] = (marker, now)
            return None
        done = processed if processed is not None else position
        if highwater is None or done is None or highwater <= done:
            self._seen[partition] = (marker, now)  # nothing waiting: quiet, not stuck
            return None
        idle = now - last[1]
        return Stall(partition, highwater - done, idle) if idle >= self.stall_s else None

    def forget(self, keep: set[Partition]) -> None:
        """Drop partitions no longer assigned (after a rebalance)."""
        for partition in set(self._seen) - keep:
            del self._seen[partition]
