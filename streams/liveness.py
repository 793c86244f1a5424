"""Is the worker still moving? A stall detector for consumers that stop fetching or committing
without any error (faust-streaming#629; the history is in docs/design/delivery.md). Pure logic.

Every few seconds the worker reports, for each input partition it owns, the broker's high
watermark and log start offset, the next offset after the last record an agent took and the
committed offset. A partition stalls when input is uncommitted (high watermark beyond the
committed offset, or beyond the log start when nothing was ever committed or taken) and neither
processing nor committing has moved for `stall_s`. A partition whose input is all committed never
stalls, however long it is quiet. The offsets come from the broker: the consumer's fetch position
of a partition it never fetched never comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Partition = tuple[str, int]


@dataclass(frozen=True)
class Stall:
    partition: Partition
    waiting: int  # records past the committed offset
    seconds: float  # since the last movement

    def __str__(self) -> str:
        topic, number = self.partition
        return f"{topic}[{number}]: {self.waiting} records waiting, no progress for {self.seconds:.0f}s"


@dataclass
class LivenessCheck:
    stall_s: float
    _seen: dict[Partition, tuple[tuple[int | None, ...], float]] = field(default_factory=dict)

    def observe(
        self,
        partition: Partition,
        highwater: int | None,
        log_start: int | None,
        processed: int | None,
        committed: int | None,
        now: float,
    ) -> Stall | None:
        """`highwater` and `log_start` are the broker's, `processed` the next offset after the last
        record an agent took and `committed` the group's committed offset (None: not known)."""
        marker = (processed, committed)
        last = self._seen.get(partition)
        if last is None or last[0] != marker:
            self._seen[partition] = (marker, now)
            return None
        done = next((o for o in (committed, processed, log_start) if o is not None and o >= 0), None)
        if highwater is None or done is None or highwater <= done:
            self._seen[partition] = (marker, now)  # nothing waiting: quiet, not stuck
            return None
        idle = now - last[1]
        return Stall(partition, highwater - done, idle) if idle >= self.stall_s else None

    def forget(self, keep: set[Partition]) -> None:
        """Drop partitions no longer assigned (after a rebalance)."""
        for partition in set(self._seen) - keep:
            del self._seen[partition]
