"""The bidder's state: daily spend, pacing and per-user frequency caps.

The state is a `MutableMapping[str, Any]` of plain JSON values, like the profiles, so the Faust
app can back it with a changelogged table. Every key starts with the input partition it belongs
to, `p<partition>/`, and only records of that partition read or write it:

    p<P>/spend/<campaign>  {"day": "2026-11-23", "micros": 1234567, "bids": 321}
    p<P>/freq/<user key>   {"<campaign>": [bid time, epoch ms, ...]}   (only those inside the cap window)
    p<P>/applied/<topic>   {"offset": 41}                             (last offset already charged)

Partition-scoped state is what a partitioned stream processor can keep consistent without
coordination: a user's requests all arrive on one partition (the key is the user id), and each
partition gets an equal share of a campaign's daily budget (`daily_budget / partitions`). The
price of that: a campaign can under-spend when traffic is skewed across partitions. Money is
counted in integer millionths of the currency (the spec recommends integer math for money).

Spend and frequency are booked when we bid, at the bid price: there are no win or billing
notices here yet. OpenRTB 2.6 (implementation note 7.2) says buyers book spend, frequency and
pacing on the billing notice; booking at bid time is the conservative stand-in (a lost auction
or a second-price discount still counts in full) until notices are wired.

Replays: under at-least-once delivery a record can be processed twice. Charges are skipped for a
record whose offset is not beyond the partition's `applied` watermark, so a replay never spends
twice (its answer is decided again on the current state).

Clock: `now` is passed in (the handler uses `Context.now`), so tests control time.

Values are never changed in place: a read returns the stored value itself (no copy), and a write
stores a new value. So the bidder's many reads per request (every imp x campaign asks for the
user's caps and the campaign's spend) cost no copying, and a view that is dropped leaves nothing
behind in its parent or the store.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from streams.campaigns import Campaign

MICROS = 1_000_000
DAY_S = 86_400


def cost_micros(price_cpm: float) -> int:
    """What one impression at `price_cpm` (a price per thousand) costs, in millionths."""
    return round(price_cpm * MICROS / 1000)


def partition_of(key: str) -> int:
    """The input partition a state key belongs to (for a table that must place its changelog)."""
    head = key.split("/", 1)[0]
    if not head.startswith("p") or not head[1:].isdigit():
        raise ValueError(f"not a bid-state key: {key!r}")
    return int(head[1:])


class Limit(Enum):
    FREQUENCY = "frequency_capped"
    BUDGET = "out_of_budget"
    PACING = "ahead_of_pace"


@dataclass(frozen=True)
class Refusal:
    limit: Limit
    detail: str

    def __str__(self) -> str:
        return f"{self.limit.value}:{self.detail}"


class Ledger:
    """A write-back view of the state for one handler call.

    Reads see the writes made through this view (and its parent's); nothing reaches the store
    before `commit()`. So a handler that fails half-way changes nothing (the pipeline then runs
    it record by record), and a request whose bids must not be charged (test mode, a replay)
    simply drops its child view.
    """

    def __init__(self, store: MutableMapping[str, Any] | Ledger, *, partitions: int) -> None:
        self._store = store
        self._partitions = partitions
        self._dirty: dict[str, Any] = {}

    def child(self) -> Ledger:
        return Ledger(self, partitions=self._partitions)

    def get(self, key: str) -> Any:
        if key in self._dirty:
            return self._dirty[key]
        return self._store.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._dirty[key] = value

    def commit(self) -> None:
        for key, value in self._dirty.items():
            self._store[key] = value
        self._dirty.clear()

    # --- the state -------------------------------------------------------------------------------

    def _read(self, key: str) -> Mapping[str, Any]:
        """The stored value itself, read-only (see the module's note on copying)."""
        value = self.get(key)
        return value if isinstance(value, dict) else {}

    def watermark(self, topic: str, partition: int) -> int:
        return int(self._read(f"p{partition}/applied/{topic}").get("offset", -1))

    def advance(self, topic: str, partition: int, offset: int) -> None:
        if offset > self.watermark(topic, partition):
            self[f"p{partition}/applied/{topic}"] = {"offset": offset}

    def share_micros(self, campaign: Campaign) -> int:
        """This partition's part of the campaign's daily budget."""
        return round(campaign.daily_budget * MICROS) // self._partitions

    def spent_micros(self, campaign: Campaign, partition: int, now: datetime) -> int:
        entry = self._read(f"p{partition}/spend/{campaign.id}")
        return int(entry.get("micros", 0)) if entry.get("day") == _day(now) else 0

    def allowed_micros(self, campaign: Campaign, now: datetime) -> int:
        """How much of the share may be spent by `now`: all of it (asap), or the even line."""
        share = self.share_micros(campaign)
        if campaign.pacing.mode == "asap":
            return share
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        elapsed = (now - midnight).total_seconds() / DAY_S
        return min(share, int(share * (elapsed + campaign.pacing.burst)))

    def seen(self, campaign: Campaign, user: str, partition: int, now: datetime) -> list[int]:
        """Bid times (epoch ms) of this campaign for this user inside the cap window."""
        if campaign.frequency_cap is None:
            return []
        since = _ms(now) - campaign.frequency_cap.window_s * 1000
        times = self._read(f"p{partition}/freq/{user}").get(campaign.id, [])
        return [t for t in times if t > since]

    def refusal(
        self, campaign: Campaign, user: str, partition: int, now: datetime, cost: int = 0
    ) -> Refusal | None:
        """Why the campaign may not buy one more impression for this user now (None: it may).
        With `cost=0` it asks whether there is any room left at all (before pricing)."""
        cap = campaign.frequency_cap
        if cap is not None:
            count = len(self.seen(campaign, user, partition, now))
            if count >= cap.impressions:
                return Refusal(Limit.FREQUENCY, f"{count}/{cap.impressions}_per_{cap.window_s}s")
        spent = self.spent_micros(campaign, partition, now)
        share = self.share_micros(campaign)
        if spent + cost > share or spent >= share:
            return Refusal(Limit.BUDGET, f"spent={spent}+{cost}>share={share}_micros")
        allowed = self.allowed_micros(campaign, now)
        if spent + cost > allowed or spent >= allowed:
            return Refusal(Limit.PACING, f"spent={spent}+{cost}>allowed_now={allowed}_micros")
        return None

    def charge(self, campaign: Campaign, user: str, partition: int, now: datetime, cost: int) -> None:
        """Book one impression: new values for the spend and the user's caps, never an update in
        place. The campaign's bid times outside its cap window are dropped as they are written."""
        key = f"p{partition}/spend/{campaign.id}"
        entry = self._read(key)
        today = _day(now)
        spent = (
            (int(entry.get("micros", 0)), int(entry.get("bids", 0))) if entry.get("day") == today else (0, 0)
        )
        self[key] = {"day": today, "micros": spent[0] + cost, "bids": spent[1] + 1}
        if campaign.frequency_cap is not None:
            fkey = f"p{partition}/freq/{user}"
            times = [*self.seen(campaign, user, partition, now), _ms(now)]
            self[fkey] = {**self._read(fkey), campaign.id: times}


def _day(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


def _ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)
