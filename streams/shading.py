"""Bid shading for first-price auctions (`BidRequest.at == 1`), learned from the notices.

In a first-price auction the winner pays its bid, so bidding the full value (the campaign's
price, here the "unshaded" price) overpays whenever the next bid was lower. Gligorijevic et al.,
"Bid Shading in The Brave New World of First-Price Auctions", CIKM 2020, learn a shading factor
from what the market reveals, with the minimum bid to win (`${AUCTION_MIN_TO_WIN}`, sent with
win and loss notices by exchanges that support it) as the most informative signal, and a
win-rate model where it is missing. We keep that split with two simple online rules, per
campaign and input partition (`p<P>/shade/<campaign>`: `{"factor": f, "updates": n}`):

- with min_to_win m for a bid of unshaded price u: move f a step towards the factor that would
  just have won, m / u x (1 + MARGIN):  f <- f + ETA x (min(1, m / u x (1 + MARGIN)) - f);
- without it: a win-rate controller,  f <- f - ETA_WIN_RATE x (won - TARGET_WIN_RATE)
  (won = 1 for a win or billing notice, 0 for a loss), whose fixed point wins TARGET_WIN_RATE of
  the auctions;

and f is kept in [MIN_FACTOR, 1]: never above the campaign's own valuation. The first-price bid
is round(u x f, 4), but never below the imp's floor when u itself clears it. One update per bid
(its first win or billing notice, or its loss notice); an expired bid teaches nothing.

Simplified from the paper: they fit a parametric win-probability curve per context (site,
size, ...) and choose the bid that maximises expected surplus; we learn one factor per campaign
and partition by stochastic approximation. Second-price auctions (`at == 2`) are not shaded: the
winner pays the second price already.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.pacing import Ledger

FIRST_PRICE = 1
MIN_FACTOR = 0.3
START_FACTOR = 1.0  # no shading until the market has said something
ETA = 0.1  # step towards the factor min_to_win asks for
MARGIN = 0.02  # bid this much above the minimum to win
ETA_WIN_RATE = 0.02
TARGET_WIN_RATE = 0.4


@dataclass(frozen=True)
class Shade:
    factor: float
    updates: int


def _key(partition: int, campaign: str) -> str:
    return f"p{partition}/shade/{campaign}"


def current(ledger: Ledger, campaign: str, partition: int) -> Shade:
    entry = ledger.read(_key(partition, campaign))
    return Shade(float(entry.get("factor", START_FACTOR)), int(entry.get("updates", 0)))


def clamp(factor: float) -> float:
    return min(1.0, max(MIN_FACTOR, factor))


def next_factor(factor: float, *, unshaded: float, won: bool, min_to_win: float | None) -> float:
    """One update (see the module's rules)."""
    if min_to_win is not None and unshaded > 0:
        wanted = clamp(min_to_win / unshaded * (1 + MARGIN))
        return clamp(factor + ETA * (wanted - factor))
    return clamp(factor - ETA_WIN_RATE * ((1.0 if won else 0.0) - TARGET_WIN_RATE))


def learn(
    ledger: Ledger, campaign: str, partition: int, *, unshaded: float, won: bool, min_to_win: float | None
) -> Shade:
    was = current(ledger, campaign, partition)
    now = Shade(next_factor(was.factor, unshaded=unshaded, won=won, min_to_win=min_to_win), was.updates + 1)
    ledger[_key(partition, campaign)] = {"factor": now.factor, "updates": now.updates}
    return now


def shaded_price(unshaded: float, factor: float, floor: float) -> float:
    """The first-price bid: u x f rounded as prices are, but not below a floor u clears."""
    return max(round(unshaded * factor, 4), floor) if unshaded >= floor else unshaded
