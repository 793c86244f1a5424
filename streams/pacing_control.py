"""The pacing controller: probabilistic throttling towards a campaign's daily target curve.

After Agarwal, Ghosh, Wei and Yu, "Budget Pacing for Targeted Online Advertisements at
LinkedIn", KDD 2014: each campaign bids on a request only with probability r, its pass-through
rate; the day is cut into time slots, each slot gets an allocation of the budget, and at each
slot's end r is adjusted by comparing the slot's spend with its allocation.

Here, per campaign and input partition (`p<P>/pace/<campaign>`: `{"slot": n, "rate": r,
"committed": c}`, the committed spend when slot n began):
- the allocation of the coming slot is the target curve's share of it (`Pacing.fraction`, even
  or 24 hour-of-day weights, times the partition's share of the budget), plus a part of the gap
  between the curve and what is committed: alloc = share x (F(t + slot) - F(t)) + (share x F(t)
  - committed) / CATCH_UP_SLOTS, so past errors are made good over a few slots;
- "spend" is booked plus reserved (`Ledger.committed_micros`), the figure the budget ceiling and
  the hard pacing line (curve + burst) check as well;
- the update: r <- r x alloc / (last slot's spend), bounded to a factor of MAX_STEP either way
  per slot and to [MIN_RATE, 1]; a slot without spend opens the rate by MAX_STEP;
- the rate is updated lazily, by the first request of a slot that reads it, so no timer is
  needed and every request of a slot decides on the same rate;
- the throttle draw is a hash of the request id and the campaign, uniform in [0, 1): a replayed
  record draws the same number, and the campaigns of one request draw independently.

Simplified from the paper: its allocation per slot comes from a traffic forecast learned from
history, and its rate moves by a fixed adjustment factor each slot; we take the curve as the
forecast and scale the rate by how far the last slot's spend was from its allocation (the spend
per unit of rate of the last slot is the traffic estimate), which follows a step in the curve
(the daytime shape's morning jump) within a few slots rather than a dozen. A new campaign starts
at rate 1 (the paper starts low); the hard line bounds its first slots. `asap` campaigns are
never throttled (only the budget ceiling holds them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from streams.campaigns import Campaign
from streams.pacing import Ledger

SLOT_S = 300  # the controller's time slot: 288 updates a day
CATCH_UP_SLOTS = 3  # a gap to the curve is made good over this many slots
MAX_STEP = 2.0  # the rate moves by at most this factor per slot
MIN_RATE = 0.001  # never fully closed: a throttled campaign still sees what the market does
START_RATE = 1.0


@dataclass(frozen=True)
class Pace:
    rate: float
    target_micros: int  # the curve's share of the budget by now
    committed_micros: int  # booked plus reserved

    def explain(self) -> str:
        return f"rate={self.rate:.4f}:committed={self.committed_micros}:target={self.target_micros}_micros"


def draw(request_id: str, campaign: str) -> float:
    """The request's throttle draw for a campaign, uniform in [0, 1), the same on every replay."""
    digest = hashlib.blake2b(f"{request_id}\x1f{campaign}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pace(ledger: Ledger, campaign: Campaign, partition: int, now: datetime) -> Pace:
    """The campaign's pass-through rate on this partition now, updated (and written to
    `ledger`) if a new slot began since it was last read."""
    share = ledger.share_micros(campaign)
    curve = campaign.pacing
    target = int(share * curve.fraction(now))
    committed = ledger.committed_micros(campaign, partition, now)
    if curve.mode == "asap":
        return Pace(1.0, target, committed)
    key = f"p{partition}/pace/{campaign.id}"
    entry = ledger.read(key)
    slot = int(now.timestamp()) // SLOT_S
    rate = float(entry.get("rate", START_RATE))
    if entry.get("slot") != slot:
        if "slot" in entry:
            slots = max(1, slot - int(entry["slot"]))
            spent = (committed - int(entry.get("committed", 0))) / slots  # per slot since
            later = now + timedelta(seconds=SLOT_S)
            ahead = (
                curve.fraction(later) if later.astimezone(UTC).date() == now.astimezone(UTC).date() else 1.0
            )
            coming = share * (ahead - curve.fraction(now))  # the curve's allocation of the coming slot
            rate = next_rate(rate, spent, coming + (target - committed) / CATCH_UP_SLOTS)
        ledger[key] = {"slot": slot, "rate": rate, "committed": committed}
    return Pace(rate, target, committed)


def next_rate(rate: float, spent: float, allocation: float) -> float:
    """One slot's update: scaled by allocation / spend, at most MAX_STEP either way. A slot that
    spent nothing (or less than nothing: a new day, reservations released) opens the rate."""
    step = MAX_STEP if spent <= 0 else min(MAX_STEP, max(1 / MAX_STEP, allocation / spent))
    return min(1.0, max(MIN_RATE, rate * step))


def passes(request_id: str, campaign: Campaign, current: Pace) -> bool:
    return current.rate >= 1.0 or draw(request_id, campaign.id) < current.rate
