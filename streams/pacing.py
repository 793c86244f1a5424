"""The bidder's state: daily spend, reservations, pacing and per-user frequency caps.

The state is a `MutableMapping[str, Any]` of plain JSON values, like the profiles, so the Faust
app can back it with a changelogged table. Every key starts with the input partition it belongs
to, `p<partition>/`, and only records of that partition read or write it (the bid requests and
the notices of partition P: `ad-events` is written to the partition of the request answered):

    p<P>/spend/<campaign>  {"day": "2026-11-23", "micros": 1234567, "impressions": 321}  (billed)
    p<P>/hold/<campaign>   {"<bucket start, epoch ms>": micros, ...}   (open reservations, by bid time)
    p<P>/resv/<bid id>     a `Reservation`: open, won, or resolved (billed, lost: a tombstone)
    p<P>/freq/<user key>   {"<campaign>": [epoch ms, ...]}   (reserved slots and delivered impressions)
    p<P>/applied/<topic>   {"offset": 41}                    (last offset already applied)
    p<P>/pace/<campaign>, p<P>/shade/<campaign>   the pacing controller and the bid shader
                                                  (`streams.pacing_control`, `streams.shading`)

Partition-scoped state is what a partitioned stream processor can keep consistent without
coordination: a user's requests all arrive on one partition (the key is the user id), and each
partition gets an equal share of a campaign's daily budget (`daily_budget / partitions`). The
price of that: a campaign can under-spend when traffic is skewed across partitions. Money is
counted in integer millionths of the currency (the spec recommends integer math for money).

Money follows OpenRTB 2.6 (implementation guide, billing notice): a bid holds a *reservation*
of its bid-price cost and a frequency slot, which count against the budget, the pacing line and
the cap exactly like spend until they are resolved. The billing notice (`burl`) books spend at
the clearing price and counts a delivered impression; a loss notice, or no final notice within
`Settings.notice_timeout_s`, releases the reservation (`streams.handlers.notices`). So a budget
is spent on what was won at what it cost, not on every bid at its price.

Reservations are summed per campaign in time buckets of `timeout / HOLD_BUCKETS` by bid time,
so the bid path reads one small value per campaign, and a bucket stops counting once every
reservation in it is past the timeout (at most one bucket width, 28 s by default, after the
first of them: never before, so the budget ceiling holds). The worker's timer then releases
each expired reservation exactly and publishes its `expired` outcome; the bucket sum is only
what the bid path reads if that timer is behind.

Replays: under at-least-once delivery a record can be processed twice. Reservations are skipped
for a bid request whose offset is not beyond the partition's `applied` watermark, so a replay
never reserves twice (its answer is decided again on the current state); notices are idempotent
through the reservation's own state (see `streams.handlers.notices`).

Clock: `now` is passed in (the handler uses `Context.now`), so tests control time.

Values are never changed in place: a read returns the stored value itself (no copy), and a write
stores a new value. So the bidder's many reads per request (every imp x campaign asks for the
user's caps and the campaign's spend) cost no copying, and a view that is dropped leaves nothing
behind in its parent or the store.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from streams.campaigns import Campaign
from streams.settings import Settings

MICROS = 1_000_000
DAY_S = 86_400
HOLD_BUCKETS = 32  # reservations are summed in this many buckets per notice timeout
DEFAULT_TIMEOUT_S: float = Settings.model_fields["notice_timeout_s"].default


def cost_micros(price_cpm: float) -> int:
    """What one impression at `price_cpm` (a price per thousand) costs, in millionths."""
    return round(price_cpm * MICROS / 1000)


def partition_of(key: str) -> int:
    """The input partition a state key belongs to (for a table that must place its changelog)."""
    head = key.split("/", 1)[0]
    if not head.startswith("p") or not head[1:].isdigit():
        raise ValueError(f"not a bid-state key: {key!r}")
    return int(head[1:])


def resv_key(partition: int, bid_id: str) -> str:
    return f"p{partition}/resv/{bid_id}"


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


OPEN, WON, BILLED, LOST = "open", "won", "billed", "lost"
LIVE_STATES = (OPEN, WON)  # still holding budget and a frequency slot


@dataclass(frozen=True)
class Reservation:
    """What a bid holds until its billing or loss notice (or the timeout). Stored as a dict.
    `outcomes` keeps every outcome booked for it (AdOutcome as JSON), so a replayed notice
    sends the same outcome again rather than booking anything."""

    bid_id: str
    imp: str
    campaign: str
    user: str
    micros: int  # the bid-price cost reserved
    price: float  # the CPM bid (shaded)
    unshaded: float  # the CPM before shading (the bid shader learns the ratio)
    factor: float  # the shading factor applied (1 without shading)
    at: int  # auction type of the request
    issued_ms: int  # the bid's time, as signed in its notice URLs; also its frequency slot
    state: str = OPEN
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Reservation:
        return cls(**value)


_DELETED = object()


class Ledger:
    """A write-back view of the state for one handler call.

    Reads see the writes made through this view (and its parent's); nothing reaches the store
    before `commit()`. So a handler that fails half-way changes nothing (the pipeline then runs
    it record by record), and a request whose bids must not be reserved (test mode, a replay)
    simply drops its child view.
    """

    def __init__(
        self,
        store: MutableMapping[str, Any] | Ledger,
        *,
        partitions: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._store = store
        self._partitions = partitions
        self.timeout_ms = int(timeout_s * 1000)
        self._bucket_ms = max(1, self.timeout_ms // HOLD_BUCKETS)
        self._dirty: dict[str, Any] = {}

    def child(self) -> Ledger:
        return Ledger(self, partitions=self._partitions, timeout_s=self.timeout_ms / 1000)

    def get(self, key: str) -> Any:
        if key in self._dirty:
            value = self._dirty[key]
            return None if value is _DELETED else value
        return self._store.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._dirty[key] = value

    def delete(self, key: str) -> None:
        self._dirty[key] = _DELETED

    def commit(self) -> None:
        store = self._store
        for key, value in self._dirty.items():
            if value is not _DELETED:
                store[key] = value
            elif isinstance(store, Ledger):
                store.delete(key)
            elif key in store:
                del store[key]
        self._dirty.clear()

    # --- the state -------------------------------------------------------------------------------

    def read(self, key: str) -> Mapping[str, Any]:
        """The stored value itself, read-only (see the module's note on copying)."""
        value = self.get(key)
        return value if isinstance(value, dict) else {}

    def watermark(self, topic: str, partition: int) -> int:
        return int(self.read(f"p{partition}/applied/{topic}").get("offset", -1))

    def advance(self, topic: str, partition: int, offset: int) -> None:
        if offset > self.watermark(topic, partition):
            self[f"p{partition}/applied/{topic}"] = {"offset": offset}

    def share_micros(self, campaign: Campaign) -> int:
        """This partition's part of the campaign's daily budget."""
        return round(campaign.daily_budget * MICROS) // self._partitions

    def spent_micros(self, campaign: Campaign, partition: int, now: datetime) -> int:
        """Booked (billed) today."""
        entry = self.read(f"p{partition}/spend/{campaign.id}")
        return int(entry.get("micros", 0)) if entry.get("day") == _day(now) else 0

    def held_micros(self, campaign: Campaign, partition: int, now: datetime) -> int:
        """Reserved by bids still waiting for their billing or loss notice (see the module's note
        on buckets: an expired reservation stops counting here even before the timer ran)."""
        buckets = self.read(f"p{partition}/hold/{campaign.id}")
        return sum(self._live_buckets(buckets, _ms(now)).values())

    def committed_micros(self, campaign: Campaign, partition: int, now: datetime) -> int:
        """What counts against the budget and the pacing line: booked plus reserved."""
        return self.spent_micros(campaign, partition, now) + self.held_micros(campaign, partition, now)

    def allowed_micros(self, campaign: Campaign, now: datetime) -> int:
        """How much of the share may be committed by `now`: all of it (asap), or the target
        curve's share of the day so far plus the campaign's burst (`Pacing.fraction`)."""
        share = self.share_micros(campaign)
        if campaign.pacing.mode == "asap":
            return share
        return min(share, int(share * (campaign.pacing.fraction(now) + campaign.pacing.burst)))

    def seen(self, campaign: Campaign, user: str, partition: int, now: datetime) -> list[int]:
        """Slots (epoch ms) of this campaign for this user inside the cap window: reserved bids
        and delivered impressions."""
        if campaign.frequency_cap is None:
            return []
        since = _ms(now) - campaign.frequency_cap.window_s * 1000
        times = self.read(f"p{partition}/freq/{user}").get(campaign.id, [])
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
        spent = self.committed_micros(campaign, partition, now)
        share = self.share_micros(campaign)
        if spent + cost > share or spent >= share:
            return Refusal(Limit.BUDGET, f"spent={spent}+{cost}>share={share}_micros")
        allowed = self.allowed_micros(campaign, now)
        if spent + cost > allowed or spent >= allowed:
            return Refusal(Limit.PACING, f"spent={spent}+{cost}>allowed_now={allowed}_micros")
        return None

    # --- reservations ----------------------------------------------------------------------------

    def expired(self, issued_ms: int, now: datetime) -> bool:
        """Past the notice timeout: a notice for it is too late, its reservation is released."""
        return _ms(now) >= issued_ms + self.timeout_ms

    def reservation(self, partition: int, bid_id: str) -> Reservation | None:
        value = self.get(resv_key(partition, bid_id))
        return Reservation.from_json(value) if isinstance(value, dict) else None

    def put(self, partition: int, resv: Reservation) -> None:
        self[resv_key(partition, resv.bid_id)] = resv.to_json()

    def reserve(self, campaign: Campaign, partition: int, now: datetime, resv: Reservation) -> None:
        """Hold the bid's cost and a frequency slot (at `resv.issued_ms`) until it is resolved."""
        self._hold(campaign.id, partition, resv.issued_ms, resv.micros, now)
        if campaign.frequency_cap is not None:
            fkey = f"p{partition}/freq/{resv.user}"
            times = [*self.seen(campaign, resv.user, partition, now), resv.issued_ms]
            self[fkey] = {**self.read(fkey), campaign.id: times}
        self.put(partition, resv)

    def release(self, partition: int, resv: Reservation, now: datetime) -> None:
        """Give back a live reservation's held cost and frequency slot (the caller stores its
        new state)."""
        self._hold(resv.campaign, partition, resv.issued_ms, -resv.micros, now)
        fkey = f"p{partition}/freq/{resv.user}"
        caps = self.read(fkey)
        times = caps.get(resv.campaign)
        if isinstance(times, list) and resv.issued_ms in times:
            rest = list(times)
            rest.remove(resv.issued_ms)
            left = {k: v for k, v in {**caps, resv.campaign: rest}.items() if v}
            if left:
                self[fkey] = left
            else:
                self.delete(fkey)

    def charge(self, campaign: Campaign, user: str, partition: int, now: datetime, cost: int) -> None:
        """Book one delivered impression: new values for the spend and the user's caps, never an
        update in place. The campaign's slots outside its cap window are dropped as they are
        written."""
        key = f"p{partition}/spend/{campaign.id}"
        entry = self.read(key)
        today = _day(now)
        spent = (
            (int(entry.get("micros", 0)), int(entry.get("impressions", 0)))
            if entry.get("day") == today
            else (0, 0)
        )
        self[key] = {"day": today, "micros": spent[0] + cost, "impressions": spent[1] + 1}
        if campaign.frequency_cap is not None:
            fkey = f"p{partition}/freq/{user}"
            times = [*self.seen(campaign, user, partition, now), _ms(now)]
            self[fkey] = {**self.read(fkey), campaign.id: times}

    def _hold(self, campaign: str, partition: int, issued_ms: int, micros: int, now: datetime) -> None:
        key = f"p{partition}/hold/{campaign}"
        buckets = dict(self._live_buckets(self.read(key), _ms(now)))
        bucket = str(issued_ms - issued_ms % self._bucket_ms)
        if bucket in buckets or micros > 0:
            left = buckets.get(bucket, 0) + micros
            if left > 0:
                buckets[bucket] = left
            else:
                buckets.pop(bucket, None)
        self[key] = buckets

    def _live_buckets(self, buckets: Mapping[str, Any], now_ms: int) -> Mapping[str, int]:
        """The buckets that may still hold a reservation inside the timeout."""
        horizon = now_ms - self.timeout_ms - self._bucket_ms
        if all(int(b) > horizon for b in buckets):
            return buckets
        return {b: m for b, m in buckets.items() if int(b) > horizon}


def _day(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


def _ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)
