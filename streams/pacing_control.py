"""The pacing controller: probabilistic throttling towards a campaign's daily target curve.

After Agarwal, Ghosh, Wei and Yu, "Budget Pacing for Targeted Online Advertisements at
LinkedIn", KDD 2014: each campaign bids on a request only with probability r, its pass-through
rate, and r is adjusted once per time slot by comparing what was spent with what the plan
allocated: down by a factor (1 - ADJUST) when spend is ahead, up by (1 + ADJUST) when behind,
within [MIN_RATE, 1].

Here, per campaign and input partition (`p<P>/pace/<campaign>`, `{"slot": n, "rate": r}`):
- the plan is the campaign's target curve (`streams.campaigns.Pacing.fraction`: even, or 24
  hour-of-day weights) times the partition's share of the budget;
- "spent" is booked plus reserved (`Ledger.committed_micros`), the same figure the budget and
  the hard pacing line (curve + burst) check;
- the rate is updated lazily, by the first request of a slot that reads it, so no timer is
  needed and a replay of a record decides on the same slot's rate;
- the throttle draw is a hash of the request id and the campaign, uniform in [0, 1): a replayed
  record draws the same number, and the campaigns of one request draw independently.

Simplified from the paper: they compare each slot's spend with that slot's allocation and
re-allocate the remaining budget over the remaining slots (and forecast traffic per slot from
history); we compare the cumulative spend with the curve's cumulative target, which corrects
past errors without a traffic forecast and needs no per-slot history. They also start a new
campaign at a low rate; ours starts at 1, bounded by the hard line in its first slots. `asap`
campaigns are never throttled (only the budget ceiling holds them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from streams.campaigns import Campaign
from streams.pacing import Ledger

SLOT_S = 300  # the controller's time slot: 288 updates a day
ADJUST = 0.2  # r x (1 - ADJUST) when ahead of the curve, r x (1 + ADJUST) when behind
MIN_RATE = 0.001  # never fully closed: a throttled campaign still sees the traffic it needs
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
    target = int(share * campaign.pacing.fraction(now))
    committed = ledger.committed_micros(campaign, partition, now)
    if campaign.pacing.mode == "asap":
        return Pace(1.0, target, committed)
    key = f"p{partition}/pace/{campaign.id}"
    entry = ledger.read(key)
    slot = int(now.timestamp()) // SLOT_S
    rate = float(entry.get("rate", START_RATE))
    if entry.get("slot") != slot:
        rate = next_rate(rate, committed, target) if "slot" in entry else rate
        ledger[key] = {"slot": slot, "rate": rate}
    return Pace(rate, target, committed)


def next_rate(rate: float, committed: int, target: int) -> float:
    """One slot's update: multiplicative, down when ahead of the curve, up when behind."""
    stepped = rate * (1 - ADJUST) if committed > target else rate * (1 + ADJUST)
    return min(1.0, max(MIN_RATE, stepped))


def passes(request_id: str, campaign: Campaign, current: Pace) -> bool:
    return current.rate >= 1.0 or draw(request_id, campaign.id) < current.rate
