"""The Campaigns panel's figures: per campaign and UTC day, what was bid and what was booked.

Two topics feed it (the caller, `dashboard.state`, has already dropped redelivered records):
- `ad-bids`: each bid counts once, with its value at the bid price (`bid_value`), on the UTC
  day of the record's Kafka timestamp. This is what was offered, not what was spent: a bid
  only holds a reservation in the bidder (`streams.pacing`).
- `ad-outcomes`: what the worker booked from the exchange's notices, on the UTC day of the
  outcome's `at`. Spend is the sum of `charged_micros` of billed outcomes (the clearing price);
  won, billed, lost and expired outcomes are counted.

Pacing compares the booked spend with the bidder's own line for the whole daily budget
(`Ledger.allowed_micros`, which follows the campaign's target curve, `Pacing.fraction`: even,
hour-of-day shape, or asap). The bidder also counts open reservations against that line; the
dashboard does not see them, so its pace is what has been billed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.campaigns import Campaign
from streams.pacing import MICROS, Ledger
from streams.schemas.adevents import AdOutcome, OutcomeKind

UNKNOWN = "?"  # a bid without a campaign id


def pacing_allowed_micros(campaign: Campaign, now: datetime) -> int:
    """What the whole campaign may have committed by `now`: the bidder's own pacing line
    (`streams.pacing.Ledger.allowed_micros`) for its full daily budget, i.e. the partitions'
    shares summed (up to their rounding)."""
    return Ledger({}, partitions=1).allowed_micros(campaign, now)


def utc_day(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def _no_outcomes() -> dict[OutcomeKind, int]:
    return dict.fromkeys(OutcomeKind, 0)


@dataclass
class _Day:
    bids: int = 0
    bid_micros: int = 0
    spent_micros: int = 0
    outcomes: dict[OutcomeKind, int] = field(default_factory=_no_outcomes)


class CampaignFigures:
    """Per (campaign, UTC day) figures, and the rows the page shows for one day."""

    def __init__(self, campaigns: dict[str, Campaign]) -> None:
        self.campaigns = campaigns
        self._days: dict[tuple[str, str], _Day] = {}

    def _day(self, campaign: str, day: str) -> _Day:
        return self._days.setdefault((campaign, day), _Day())

    def bid(self, campaign: str | None, day: str, micros: int) -> None:
        """One bid at a bid-price cost of `micros`."""
        figures = self._day(campaign or UNKNOWN, day)
        figures.bids += 1
        figures.bid_micros += micros

    def outcome(self, outcome: AdOutcome) -> None:
        figures = self._day(outcome.campaign, utc_day(outcome.at))
        figures.outcomes[outcome.kind] += 1
        if outcome.kind is OutcomeKind.BILLED:
            figures.spent_micros += outcome.charged_micros

    def rows(self, now: datetime) -> list[dict[str, Any]]:
        today = utc_day(now)
        ids = set(self.campaigns) | {cid for cid, day in self._days if day == today}
        return [self._row(cid, self._days.get((cid, today), _Day()), now) for cid in sorted(ids)]

    def _row(self, cid: str, figures: _Day, now: datetime) -> dict[str, Any]:
        campaign = self.campaigns.get(cid)
        allowed = pacing_allowed_micros(campaign, now) if campaign is not None else None
        spent = figures.spent_micros
        return {
            "campaign": cid,
            "bids_today": figures.bids,
            "bid_value_today": figures.bid_micros / MICROS,
            "outcomes_today": {kind.value: n for kind, n in figures.outcomes.items()},
            "spent_today": spent / MICROS,
            "pacing_allowed": allowed / MICROS if allowed is not None else None,
            "pace": spent / allowed if allowed else None,
            "daily_budget": campaign.daily_budget if campaign is not None else None,
            "pacing_mode": campaign.pacing.mode if campaign is not None else None,
        }
