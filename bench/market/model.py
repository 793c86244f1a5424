"""The exchange side of an auction: competing bids, floors, clearing, and the notices it sends.

Stated market (every figure is an assumption of this simulator, not a measurement):
- each auction has `competitors` other bidders whose CPMs are i.i.d. lognormal: ln(cpm) ~
  Normal(`mu`, `sigma`); with the defaults (mu=0, sigma=0.6, 4 bidders) the median competing bid
  is 1.00 CPM and the median of the best of four is about 1.5 CPM;
- the imp's floor is uniform on [`floor_low`, `floor_high`] and is written into the request's
  `imp.bidfloor`, so our bidder sees the floor it is judged against;
- a won impression renders (and the exchange calls the billing URL) with `render_rate`.

Clearing, for our bid `b`, the best competing bid `c` (0 when there is none) and the floor `f`,
with prices in units of 1e-4 CPM (the bidder's price precision), so ties are exact:

    min_to_win = max(f, c + increment)        the least bid that would have won
    won        = b >= min_to_win
    price      = b                             first price (at=1)
                 min_to_win                    second price (at=2); never above b, since b won
    loss code  = 100 (below floor) when b < f, else 102 (lost to a higher bid); 0 when won

Second price pays `max(f, c + increment)`, not `max(f, c) + increment`: with no competitor above
the floor the winner pays the floor, as exchanges charge it, never more than the least winning bid.

Every auction's conditions (floor, competing bids, whether a win renders) come from a Generator
seeded with (seed, auction index): auction i faces the same market whatever our bidder answered
before it and in whatever order concurrent answers arrive, so two runs with the same seed are
the same market, and a change of bidder is measured against it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import quote

import numpy as np

PRICE_UNIT = 10_000  # prices are compared in units of 1e-4 CPM


class LossReason(IntEnum):
    """OpenRTB 2.6 section 5.25 (List: Loss Reason Codes), the ones this exchange sends."""

    WON = 0
    BELOW_FLOOR = 100
    OUTBID = 102


@dataclass(frozen=True)
class MarketConfig:
    competitors: int = 4
    mu: float = 0.0  # of ln(CPM)
    sigma: float = 0.6
    floor_low: float = 0.05
    floor_high: float = 0.5
    increment: float = 0.01
    render_rate: float = 0.9
    auction_type: int = 2  # 1 first price, 2 second price

    def __post_init__(self) -> None:
        if self.auction_type not in (1, 2):
            raise ValueError("auction_type is 1 (first price) or 2 (second price)")
        if not 0 <= self.floor_low <= self.floor_high:
            raise ValueError("need 0 <= floor_low <= floor_high")
        if not 0 <= self.render_rate <= 1:
            raise ValueError("render_rate is a probability")

    def describe(self) -> dict[str, Any]:
        return {
            "competitors": self.competitors,
            "competing_cpm": f"lognormal(mu={self.mu}, sigma={self.sigma})",
            "floor_cpm": f"uniform[{self.floor_low}, {self.floor_high}]",
            "increment_cpm": self.increment,
            "render_rate": self.render_rate,
            "auction_type": {1: "first_price", 2: "second_price"}[self.auction_type],
        }


@dataclass(frozen=True)
class Conditions:
    """What the exchange holds for one auction before our bid arrives."""

    floor: float
    competing: tuple[float, ...]
    rendered: bool  # whether a win here renders (and is billed)


@dataclass(frozen=True)
class Clearing:
    won: bool
    price: float | None  # what the winner (we) pays, CPM; None when we lost
    loss: LossReason
    min_to_win: float


def _units(cpm: float) -> int:
    return round(cpm * PRICE_UNIT)


def _cpm(units: int) -> float:
    return units / PRICE_UNIT


def clear(
    bid: float, competing: tuple[float, ...], floor: float, auction_type: int, increment: float
) -> Clearing:
    """Our bid against the others and the floor (the rules in the module docstring)."""
    best = max((_units(c) for c in competing), default=0)
    need = max(_units(floor), best + _units(increment))
    ours = _units(bid)
    if ours >= need:
        price = ours if auction_type == 1 else need
        return Clearing(True, _cpm(price), LossReason.WON, _cpm(need))
    loss = LossReason.BELOW_FLOOR if ours < _units(floor) else LossReason.OUTBID
    return Clearing(False, None, loss, _cpm(need))


_MACRO = re.compile(r"\$\{(AUCTION_[A-Z_]+)\}")
# OpenRTB 2.6 section 4.4: the substitution macros this exchange knows
KNOWN_MACROS = (
    "AUCTION_ID",
    "AUCTION_BID_ID",
    "AUCTION_IMP_ID",
    "AUCTION_SEAT_ID",
    "AUCTION_AD_ID",
    "AUCTION_PRICE",
    "AUCTION_CURRENCY",
    "AUCTION_MBR",
    "AUCTION_LOSS",
    "AUCTION_MIN_TO_WIN",
)


def substitute(url: str, values: Mapping[str, str]) -> str:
    """Replace the known `${AUCTION_*}` macros: by the percent-encoded value when the exchange
    has one, else by nothing (a macro it knows but does not disclose for this notice). Macros it
    does not know stay as written."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in KNOWN_MACROS:
            return match.group(0)
        return quote(values.get(name, ""), safe="")

    return _MACRO.sub(one, url)


def format_cpm(cpm: float) -> str:
    return f"{cpm:.4f}"


@dataclass(frozen=True)
class Notice:
    kind: str  # win | billing | loss
    url: str


@dataclass(frozen=True)
class Settled:
    """One bid of ours through the auction: how it cleared and the notices to send."""

    bid_id: str
    bid_price: float
    clearing: Clearing
    rendered: bool
    notices: tuple[Notice, ...]


class Market:
    def __init__(self, config: MarketConfig, seed: int) -> None:
        self.config = config
        self.seed = seed

    def conditions(self, index: int) -> Conditions:
        """Auction `index`'s floor, competing bids and render draw; always drawn in this order and
        in full, from a Generator of its own (see the module docstring)."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, index])
        floor = round(float(rng.uniform(cfg.floor_low, cfg.floor_high)), 4)
        competing = tuple(round(float(x), 4) for x in rng.lognormal(cfg.mu, cfg.sigma, size=cfg.competitors))
        rendered = bool(rng.random() < cfg.render_rate)
        return Conditions(floor, competing, rendered)

    def settle(self, request_id: str, response: Mapping[str, Any], cond: Conditions) -> list[Settled]:
        """Every bid of a BidResponse (parsed JSON) against `cond`: a win gets its nurl called,
        then its burl when the impression renders; a loss gets its lurl. A URL the bid leaves out
        is not called. The bidder is one of the auction's bidders; several bids (imps) in one
        response each face the same competing bids."""
        out = []
        for seat in response.get("seatbid") or []:
            for bid in seat.get("bid") or []:
                price = float(bid["price"])
                clearing = clear(
                    price, cond.competing, cond.floor, self.config.auction_type, self.config.increment
                )
                values = {
                    "AUCTION_ID": request_id,
                    "AUCTION_BID_ID": str(response.get("bidid") or bid["id"]),
                    "AUCTION_IMP_ID": str(bid["impid"]),
                    "AUCTION_SEAT_ID": str(seat.get("seat") or ""),
                    "AUCTION_AD_ID": str(bid.get("adid") or ""),
                    "AUCTION_CURRENCY": str(response.get("cur") or "USD"),
                    "AUCTION_MIN_TO_WIN": format_cpm(clearing.min_to_win),
                    "AUCTION_LOSS": str(int(clearing.loss)),
                }
                notices: list[Notice] = []
                if clearing.won:
                    assert clearing.price is not None
                    values["AUCTION_PRICE"] = format_cpm(clearing.price)
                    if bid.get("nurl"):
                        notices.append(Notice("win", substitute(bid["nurl"], values)))
                    if cond.rendered and bid.get("burl"):
                        notices.append(Notice("billing", substitute(bid["burl"], values)))
                elif bid.get("lurl"):
                    notices.append(Notice("loss", substitute(bid["lurl"], values)))
                out.append(
                    Settled(str(bid["id"]), price, clearing, clearing.won and cond.rendered, tuple(notices))
                )
        return out


# Hour-of-day traffic shape (share of the day's requests per UTC hour, sums to 1): a stated
# assumption shaped like consumer web traffic, low at night, a lunch and an evening peak.
_HOURLY = (
    0.6, 0.4, 0.3, 0.3, 0.3, 0.4, 0.7, 1.0, 1.2, 1.2, 1.2, 1.3,
    1.4, 1.3, 1.2, 1.2, 1.2, 1.3, 1.5, 1.7, 1.8, 1.6, 1.2, 0.9,
)  # fmt: skip
HOURLY_SHARE = tuple(w / math.fsum(_HOURLY) for w in _HOURLY)
