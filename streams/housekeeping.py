"""Expiry of per-user state: without it the profile table and the bidder's ledger grow with every
user ever seen. Kafka-free like the handlers; the app's timer calls `Sweeper.step`.

What is dead, and why it is safe to drop:
- a profile whose last event (event time, `last_seen`) is more than `Settings.profile_ttl_s`
  behind the clock. The default, 90 days, outlasts every rule's window (churn_risk looks 30 days
  back), so a lapsed customer who returns is still recognised; one gone longer is a new visitor.
- a bidder's frequency-cap bid time older than its campaign's cap window, and every bid time of a
  campaign that no longer exists or has no cap: `Ledger.seen` ignores them already. A user whose
  caps are all empty loses the key.
- a spend entry of an earlier UTC day: `Ledger.spent_micros` counts only today's.
The replay watermarks (`p<P>/applied/<topic>`) are one per partition and input, and are kept.
Bid reservations and their tombstones (`p<P>/resv/<bid id>`) are not swept here: the notice
expiry (`streams.handlers.notices.ExpirySweep`) releases them, with an outcome, and deletes them
once the notice timeout is up. The per-campaign entries (`hold`, `pace`, `shade`) are one per
campaign and partition.

Only keys of the partitions this worker is active for are swept: a worker also holds standby
copies of other partitions, and a deletion there would write a tombstone into a changelog that
another worker owns, racing its updates. Deleting a key writes a tombstone to the changelog, so
a restarted worker does not bring the key back.

Cost: about 1.5 us per key on one (busy) core, 3 s for a million profiles and a million cap
entries, and the sweep runs on the event loop, where a 3 s pause would fail every bid in flight.
So the timer calls a `Sweeper`, which sweeps a slice of each table per call (`SLICE_KEYS`, ~15 ms)
and starts a table's next pass from a fresh snapshot of its keys (~80 ms per million keys).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.campaigns import CampaignBook
from streams.pacing import partition_of
from streams.settings import Settings

SWEEP_EVERY_S = 1.0  # the timer's period: one slice per call
SLICE_KEYS = 5_000  # keys of each table per call: a pass over a million keys takes ~200 calls


@dataclass(frozen=True)
class Swept:
    """What one `sweep` (one `Sweeper.step`) deleted or rewrote."""

    profiles: int = 0  # idle profiles deleted
    caps: int = 0  # users' cap entries deleted: no bid time left inside any window
    caps_trimmed: int = 0  # cap entries rewritten without their expired bid times
    spend: int = 0  # spend entries of earlier days deleted

    def __str__(self) -> str:
        return (
            f"deleted {self.profiles} idle profiles, {self.caps} frequency-cap entries and "
            f"{self.spend} spend entries of earlier days; trimmed {self.caps_trimmed} cap entries"
        )


def sweep(
    profiles: MutableMapping[str, Any],
    ledger: MutableMapping[str, Any],
    *,
    now: datetime,
    settings: Settings,
    book: CampaignBook,
    partitions: Collection[int],
    profile_partition: Callable[[str], int],
    users: Iterable[str] | None = None,
    ledger_keys: Iterable[str] | None = None,
) -> Swept:
    """Delete the dead entries of `profiles` and `ledger` (see the module's note) at wall-clock
    time `now`, in the input `partitions` this worker is active for; `profile_partition` maps a
    user id to the partition its records (and its profile's changelog) are on. Every key is
    looked at, or only `users` and `ledger_keys` (keys that are gone by now are skipped)."""
    horizon = now - timedelta(seconds=settings.profile_ttl_s)
    idle = [
        user
        for user in (list(profiles) if users is None else users)
        if _last_seen(profiles.get(user)) < horizon and profile_partition(user) in partitions
    ]
    for user in idle:
        del profiles[user]

    now_ms = int(now.timestamp() * 1000)
    windows_ms = {
        c.id: c.frequency_cap.window_s * 1000 for c in book.campaigns if c.frequency_cap is not None
    }
    today = now.astimezone(UTC).date().isoformat()
    caps = trimmed = spend = 0
    for key in list(ledger) if ledger_keys is None else ledger_keys:
        if partition_of(key) not in partitions:
            continue
        kind = key.split("/", 2)[1]
        value = ledger.get(key)
        if kind == "spend" and isinstance(value, Mapping) and str(value.get("day", "")) < today:
            del ledger[key]
            spend += 1
        elif kind == "freq" and isinstance(value, Mapping):
            live = _live_caps(value, windows_ms, now_ms)
            if not live:
                del ledger[key]
                caps += 1
            elif live != value:
                ledger[key] = live
                trimmed += 1
    return Swept(profiles=len(idle), caps=caps, caps_trimmed=trimmed, spend=spend)


class Sweeper:
    """`sweep` a slice at a time, for a timer: each call looks at the next `slice_keys` keys of
    each table, and a table whose pass is done starts the next one from a snapshot of its keys
    (keys written since are seen in the next pass)."""

    def __init__(
        self,
        profiles: MutableMapping[str, Any],
        ledger: MutableMapping[str, Any],
        *,
        settings: Settings,
        book: CampaignBook,
        profile_partition: Callable[[str], int],
        slice_keys: int = SLICE_KEYS,
    ) -> None:
        self._profiles, self._ledger = profiles, ledger
        self._settings, self._book, self._profile_partition = settings, book, profile_partition
        self._users = _Cursor(profiles, slice_keys)
        self._ledger_keys = _Cursor(ledger, slice_keys)

    def step(self, now: datetime, partitions: Collection[int]) -> Swept:
        """One slice, at wall-clock time `now`, in the input partitions this worker is active for."""
        return sweep(
            self._profiles,
            self._ledger,
            now=now,
            settings=self._settings,
            book=self._book,
            partitions=partitions,
            profile_partition=self._profile_partition,
            users=self._users.take(),
            ledger_keys=self._ledger_keys.take(),
        )


class _Cursor:
    def __init__(self, table: MutableMapping[str, Any], size: int) -> None:
        self._table, self._size = table, size
        self._keys: list[str] = []
        self._at = 0

    def take(self) -> list[str]:
        if self._at >= len(self._keys):
            self._keys, self._at = list(self._table), 0
        taken = self._keys[self._at : self._at + self._size]
        self._at += self._size
        return taken


_NEVER = datetime.max.replace(tzinfo=UTC)


def _last_seen(stored: Any) -> datetime:
    """A stored profile's last event time; one without (not written by the handlers) never expires."""
    seen = stored.get("last_seen") if isinstance(stored, Mapping) else None
    return datetime.fromisoformat(seen) if isinstance(seen, str) else _NEVER


def _live_caps(caps: Mapping[str, Any], windows_ms: Mapping[str, int], now_ms: int) -> dict[str, list[int]]:
    """The bid times still inside their campaign's cap window, per campaign that has any."""
    live = {}
    for campaign, times in caps.items():
        window = windows_ms.get(campaign)
        if window is None or not isinstance(times, list):
            continue
        kept = [t for t in times if t > now_ms - window]
        if kept:
            live[campaign] = kept
    return live
