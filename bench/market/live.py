"""The market live: our HTTP endpoint in real time, at a rate, for a bounded time.

    flock /tmp/ms-integration.lock flock /tmp/ms-cpu.lock \
        .venv/bin/python -m bench.market live [--rate 100] [--seconds 30]

The local stack (Kafka, Triton), a worker and the gateway (`bench.http.bidder`: the same set-up
as the HTTP benchmark, users' clicks fed first), then `--rate` bid requests per second for
`--seconds`, open loop (after a warm-up of 200 requests at 50/s to other auctions), each with tmax 120 ms and the floor and auction type of its auction in
the seeded market; every bid is cleared against the competing bids and its nurl/burl/lurl
called. A 204 says nothing about why, so the no-bid reasons are read back from `ad-bids`, where
the gateway writes every answer (the worker's no-bids with their nbr, and its own deadline
no-bids with nbr 15). Unlike the day mode, this is wall-clock time: a run of seconds sees the
pacing and budgets of that moment of the day, not a day of them.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from typing import Any

from bench.http import TMAX_MS, bidder, warm_up
from bench.market.exchange import bid_requests, run_exchange
from bench.market.model import Market, MarketConfig
from stack.local import running_stack
from stack.observe import TopicReader
from streams.schemas.bids import NoBidReason
from streams.serde import loads


def run(args: argparse.Namespace) -> dict[str, Any]:
    market = Market(MarketConfig(auction_type=args.auction_type), args.seed)
    with (
        running_stack(progress=lambda m: print(f"stack: {m}", flush=True)) as stack,
        bidder(stack, args.users, args.seed) as b,
    ):
        warm_up(b, market, args.seed)
        with TopicReader(b.settings, [b.settings.topics.ad_bids]) as reader:
            skip = len(reader.read_to_end())  # the warm-up's answers
        count = int(args.rate * args.seconds)
        bodies, ids, conds = bid_requests(market, b.users, count, TMAX_MS, args.seed)
        print(f"{count} bid requests at {args.rate:g}/s...", flush=True)
        latency, tally, _ = asyncio.run(
            run_exchange(b.ours, market, bodies, ids, conds, rate=args.rate, timeout_s=1.0, tmax_ms=TMAX_MS)
        )
        with TopicReader(b.settings, [b.settings.topics.ad_bids]) as reader:
            answers = reader.read_to_end()[skip:]
    nbr: Counter[str] = Counter()
    for answer in answers:
        body = loads(answer.value or b"{}")
        if body.get("nbr") is not None:
            nbr[NoBidReason(body["nbr"]).name.lower()] += 1
    return {
        "mode": "live",
        "seed": args.seed,
        "market": market.config.describe(),
        "latency": latency,
        "auctions": tally.report(),
        "no_bids": dict(nbr.most_common()),
        "ad_bids_records": len(answers),
    }
