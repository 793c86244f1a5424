"""The exchange over HTTP: bid requests to our endpoint at a rate (open loop), each answer run
through the seeded auction, and our nurl/burl/lurl called as an exchange calls them."""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench.market.model import Conditions, Market, Settled
from bench.openloop import Shot, fire, summary
from producers.events import EventFactory


def bid_requests(
    market: Market, users: Sequence[str], count: int, tmax: int | None, seed: int, first: int = 0
) -> tuple[list[bytes], list[str], list[Conditions]]:
    """`count` requests for `users` in turn, built as the producers build them, each with the
    floor and auction type of its auction (`first` + i) in `market`."""
    factory = EventFactory(seed)
    bodies, ids, conds = [], [], []
    for i in range(count):
        cond = market.conditions(first + i)
        body = orjson.loads(factory.bid_request(user_id=users[i % len(users)], tmax=tmax).value)
        body["at"] = market.config.auction_type
        body["imp"][0]["bidfloor"] = cond.floor
        bodies.append(orjson.dumps(body))
        ids.append(body["id"])
        conds.append(cond)
    return bodies, ids, conds


@dataclass
class Tally:
    """What the auctions made of our answers."""

    settled: list[Settled] = field(default_factory=list)
    notices: Counter[str] = field(default_factory=Counter)  # "<kind>:<status>"
    unreadable: int = 0

    def report(self) -> dict[str, Any]:
        won = [s for s in self.settled if s.clearing.won]
        billed = [s for s in won if s.rendered]
        ratios = [
            s.clearing.price / s.bid_price for s in won if s.clearing.price is not None and s.bid_price > 0
        ]
        return {
            "bids": len(self.settled),
            "won": len(won),
            "win_rate": len(won) / len(self.settled) if self.settled else 0.0,
            "billed": len(billed),
            "spend": sum(s.clearing.price or 0.0 for s in billed) / 1000,
            "mean_bid_cpm": statistics.fmean(s.bid_price for s in self.settled) if self.settled else None,
            "mean_won_bid_cpm": statistics.fmean(s.bid_price for s in won) if won else None,
            "mean_clearing_cpm": statistics.fmean(s.clearing.price or 0.0 for s in won) if won else None,
            "mean_clearing_over_bid": statistics.fmean(ratios) if ratios else None,
            "losses_by_code": {
                str(int(k)): v
                for k, v in Counter(s.clearing.loss for s in self.settled if not s.clearing.won).items()
            },
            "notices_by_status": dict(sorted(self.notices.items())),
            "unreadable_bid_responses": self.unreadable,
        }


async def run_exchange(
    url: str,
    market: Market,
    bodies: Sequence[bytes],
    ids: Sequence[str],
    conds: Sequence[Conditions],
    *,
    rate: float,
    timeout_s: float,
    tmax_ms: float,
) -> tuple[dict[str, Any], Tally, list[Shot]]:
    """Offer `bodies` at `rate`; settle each 200 and call its notices (each GET with the same
    timeout). Returns the latency summary, the auctions' tally and the shots."""
    tally = Tally()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def notices(shot: Shot) -> None:
            if shot.status != 200:
                return
            try:
                response = orjson.loads(shot.body)
            except orjson.JSONDecodeError:
                tally.unreadable += 1
                return
            for settled in market.settle(ids[shot.index], response, conds[shot.index]):
                tally.settled.append(settled)
                for notice in settled.notices:
                    try:
                        async with session.get(notice.url, timeout=timeout) as resp:
                            await resp.read()
                            tally.notices[f"{notice.kind}:{resp.status}"] += 1
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        tally.notices[f"{notice.kind}:{type(exc).__name__}"] += 1

        shots = await fire(session, url, bodies, rate, timeout_s, on_response=notices)
    await asyncio.sleep(0)
    return summary(shots, rate, tmax_ms), tally, shots
