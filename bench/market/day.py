"""One simulated, accelerated day of the bidder in the seeded market (`bench.market.model`).

    flock /tmp/ms-integration.lock .venv/bin/python -m bench.market day [--requests 12000] [--seed 7]

Why in-process: the worker's bidder reads its clock from `Context.now`, which is the wall clock in
the running worker; its pacing line, daily budget and frequency windows follow that clock, so a
day through the real worker takes a day. Here the worker's own decision code, `handle_bids`
(bid-requests -> ad-bids) and `handle_ad_events` (win/billing/loss notices -> ad-outcomes), runs
in this process with a `Context` whose `now` is a simulated clock that walks through 24 hours in
minutes, the bidder's state as a plain dict, the campaigns of `config/campaigns.json` (budgets
scaled by `--budget-scale` to the simulated traffic), and the REAL Triton recommender of the
local stack (`python -m stack`'s Triton, started here): every bid is priced from real
recommendations of real Instacart users, whose click histories are fed first through the
worker's clickstream handler.

What it therefore does not exercise: Kafka (no topics, no consumer groups, no changelogs, no
partition assignment: the records carry the partition their key would get), the HTTP gateway and
its HTTP server (each notice URL goes through the gateway's own `NoticeDesk`, which verifies it
and builds the `AdEvent`, but its write to ad-events is handed to the notices handler here), the
worker's reservation timer (the same `ExpirySweep` is stepped after every batch instead), and
any latency or deadline (requests carry no `tmax`; the recommender's time is real, the day's is
not). `bench.market live` covers HTTP and Kafka, in real time.

Traffic: `--requests` per day spread over the hours by `HOURLY_SHARE`, in batches of `--batch`
sharing one simulated instant; the exchange's win and loss notices arrive 0.2 s (simulated) after
the bid, a billing notice 1 s after its win, and a won impression that does not render gets no
billing notice, so its reservation waits for the notice timeout.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import orjson

from bench.market.model import HOURLY_SHARE, Market, MarketConfig, Notice
from producers.events import EventFactory, instacart_orders
from stack.local import LocalStack
from streams.campaigns import CampaignBook, load_campaigns
from streams.dlq import RecordMeta
from streams.gateway.bus import Delivered
from streams.gateway.metrics import GatewayMetrics
from streams.gateway.notices import NoticeDesk
from streams.handlers.bids import handle_bids
from streams.handlers.common import Context, Outcome, Output, Record
from streams.handlers.notices import ExpirySweep, handle_ad_events, write_expired
from streams.handlers.segments import handle_clicks
from streams.inference import TritonModels
from streams.pacing import MICROS
from streams.replies import ReplyIndex, load_catalogue
from streams.schemas import BidRequest, ClickEvent
from streams.schemas.adevents import AdEvent, AdOutcome, NoticeKind, OutcomeKind
from streams.schemas.bids import NoBidReason
from streams.serde import decode
from streams.tables import key_partition
from streams.text import TextTokenizer

WIN_DELAY_S = 0.2  # simulated: the exchange's win or loss notice after the bid
BILLING_DELAY_S = 1.0  # simulated: the render's billing notice after the win
MAX_BYTES = 65_536


class SimClock:
    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at


@dataclass(order=True)
class Due:
    at: datetime
    seq: int
    notice: Notice = field(compare=False)


@dataclass
class Hour:
    requests: int = 0
    bids: int = 0
    won: int = 0
    billed: int = 0
    spend_micros: int = 0
    bid_cpm: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)  # clearing / bid, over wins
    need: list[float] = field(default_factory=list)  # min-to-win / clearing, over wins
    factor: list[float] = field(default_factory=list)  # the bid shader's factor, over bids
    nbr: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    spend_by_campaign: Counter[str] = field(default_factory=Counter)  # micros


def scaled_book(scale: float) -> CampaignBook:
    """The configured campaigns with their daily budgets times `scale` (to the simulated traffic)."""
    book = load_campaigns()
    campaigns = [
        c.model_copy(update={"daily_budget": round(c.daily_budget * scale, 6)}) for c in book.campaigns
    ]
    return book.model_copy(update={"campaigns": campaigns})


class Handoff:
    """The gateway's notice desk writes here what it would write to ad-events: the day hands
    those records to the notices handler itself (the docstring says why)."""

    instance = "bench-day"

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, int]] = []

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> Delivered:
        assert partition is not None  # the desk always names the partition of the signed URL
        self.sent.append((value, partition))
        return Delivered(partition, len(self.sent) - 1)

    def ready(self) -> bool:
        return True


class Day:
    """The simulation's state: clock, bidder state, offsets, the notices in flight, the tallies."""

    def __init__(self, ctx: Context, clock: SimClock, book: CampaignBook, market: Market, seed: int) -> None:
        self.ctx, self.clock, self.book, self.market = ctx, clock, book, market
        self.settings = ctx.settings
        self.state: dict[str, Any] = {}
        self.offsets: Counter[tuple[str, int]] = Counter()
        self.due: list[Due] = []
        self.seq = 0
        self.hours = [Hour() for _ in range(24)]
        self.handoff = Handoff()
        self.desk = NoticeDesk(
            self.settings,
            self.handoff,
            self.settings.notice_signer(),
            GatewayMetrics(),
            wall=lambda: clock.now().timestamp(),
        )
        self.desk_answers: Counter[str] = Counter()
        self.factory = EventFactory(seed)
        self.sweep = ExpirySweep(self.state)
        self.spend_by_campaign: Counter[str] = Counter()
        self.exhausted: dict[str, datetime] = {}
        self.first_504: dict[str, datetime] = {}
        self.dead_letters: Counter[str] = Counter()

    def _meta(self, topic: str, partition: int, key: bytes) -> RecordMeta:
        offset = self.offsets[(topic, partition)]
        self.offsets[(topic, partition)] += 1
        return RecordMeta(topic, partition, offset, key, (), int(self.clock.now().timestamp() * 1000))

    def _hour(self) -> Hour:
        return self.hours[self.clock.now().hour]

    async def bids(self, users: Sequence[str], first: int) -> None:
        """One batch of bid requests at the clock's instant, auctions `first`... in the market."""
        topic = self.settings.topics.bid_requests
        records, conds = [], {}
        for i, user in enumerate(users):
            cond = self.market.conditions(first + i)
            body = orjson.loads(self.factory.bid_request(user_id=user, tmax=None).value)
            body["at"] = self.market.config.auction_type
            body["imp"][0]["bidfloor"] = cond.floor
            raw = orjson.dumps(body)
            key = user.encode()
            meta = self._meta(topic, key_partition(key, self.settings.partitions), key)
            records.append(Record(meta, raw, decode(raw, BidRequest, max_bytes=MAX_BYTES)))
            conds[body["id"]] = cond
        hour = self._hour()
        hour.requests += len(records)
        for out in await handle_bids(records, self.ctx, self.book, self.state):
            if not isinstance(out, Output) or out.topic != self.settings.topics.ad_bids:
                self.dead_letters["bid-requests"] += 1
                continue
            response = orjson.loads(out.value)
            if response.get("nbr") is not None:
                reason = NoBidReason(response["nbr"]).name.lower()
                hour.nbr[reason] += 1
                if reason == "budget_exhausted":
                    for campaign in _budget_refused(response):
                        self.first_504.setdefault(campaign, self.clock.now())
                continue
            hour.factor += _shading_factors(response)
            for settled in self.market.settle(response["id"], response, conds[response["id"]]):
                hour.bids += 1
                hour.bid_cpm.append(settled.bid_price)
                if settled.clearing.won:
                    hour.won += 1
                    assert settled.clearing.price is not None
                    hour.ratio.append(settled.clearing.price / settled.bid_price)
                    hour.need.append(settled.clearing.min_to_win / settled.clearing.price)
                for notice in settled.notices:
                    delay = BILLING_DELAY_S + WIN_DELAY_S if notice.kind == "billing" else WIN_DELAY_S
                    self.seq += 1
                    heapq.heappush(
                        self.due, Due(self.clock.now() + timedelta(seconds=delay), self.seq, notice)
                    )

    async def notices(self, until: datetime) -> None:
        """Deliver the notices due by `until` through the gateway's desk, then the handler, at
        the time the last of them is due; then one step of the reservation timer."""
        taken: list[Due] = []
        while self.due and self.due[0].at <= until:
            taken.append(heapq.heappop(self.due))
        if taken:
            self.clock.at = max(self.clock.at, taken[-1].at)
        for due in taken:
            url = urlsplit(due.notice.url)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            answer = await self.desk.take(NoticeKind(url.path.rsplit("/", 1)[1]), query)
            self.desk_answers[f"{due.notice.kind}:{answer.status}:{answer.outcome}"] += 1
        sent, self.handoff.sent = self.handoff.sent, []
        records = []
        for value, partition in sent:
            event = decode(value, AdEvent, max_bytes=MAX_BYTES)
            meta = self._meta(self.settings.topics.ad_events, partition, event.user.encode())
            records.append(Record(meta, value, event))
        if records:
            self._tally(await handle_ad_events(records, self.ctx, self.book, self.state))
        expiry = self.sweep.step(self.clock.now(), self.settings, range(self.settings.partitions))
        if expiry.keys:
            self._tally(expiry.outcomes)
            write_expired(self.state, expiry, now=self.clock.now(), settings=self.settings)

    def _tally(self, outcomes: Sequence[Outcome]) -> None:
        hour = self._hour()
        for out in outcomes:
            if not isinstance(out, Output):
                self.dead_letters[dict(out.headers).get("x-dlq-reason", b"?").decode()] += 1
                continue
            outcome = AdOutcome.model_validate_json(out.value)
            hour.outcomes[outcome.kind.value] += 1
            if outcome.kind is OutcomeKind.BILLED:
                hour.billed += 1
                hour.spend_micros += outcome.charged_micros
                hour.spend_by_campaign[outcome.campaign] += outcome.charged_micros
                self.spend_by_campaign[outcome.campaign] += outcome.charged_micros
                budget = self._budget_micros(outcome.campaign)
                if self.spend_by_campaign[outcome.campaign] >= 0.99 * budget:
                    self.exhausted.setdefault(outcome.campaign, self.clock.now())

    def _budget_micros(self, campaign: str) -> int:
        c = next(c for c in self.book.campaigns if c.id == campaign)
        return round(c.daily_budget * MICROS)


def _shading_factors(response: dict[str, Any]) -> list[float]:
    """The factor of each first-price bid (`imp:<id>:shading:first_price:factor=<f>:...`)."""
    out = []
    for reason in response["ext"]["reasons"]:
        if ":shading:first_price:factor=" in reason:
            out.append(float(reason.split("factor=", 1)[1].split(":", 1)[0]))
    return out


def _budget_refused(response: dict[str, Any]) -> list[str]:
    """The campaigns a budget no-bid names in its reasons (`...:out_of_budget:<campaign>:...`)."""
    out = []
    for reason in response["ext"]["reasons"]:
        parts = reason.split(":")
        if "out_of_budget" in parts and parts.index("out_of_budget") + 1 < len(parts):
            out.append(parts[parts.index("out_of_budget") + 1])
    return out


async def feed_history(ctx: Context, clock: SimClock, users: int, seed: int) -> list[str]:
    """One Instacart order per user, as a click session through the worker's clickstream
    handler (real recommender calls for the segment updates), an hour before the day starts.
    Returns the users, who now have a history the bidder can price."""
    factory = EventFactory(seed)
    first_orders = dict(reversed(instacart_orders()))  # one (the first) order per user
    picked = list(first_orders.items())[:users]
    at = clock.now().isoformat()
    offsets: Counter[int] = Counter()
    records = []
    for user, items in picked:
        for click in factory.session(user, items):
            body = orjson.loads(click.value) | {"ts": at}
            raw = orjson.dumps(body)
            part = key_partition(click.key or b"", ctx.settings.partitions)
            meta = RecordMeta("clickstream", part, offsets[part], click.key, (), None)
            offsets[part] += 1
            records.append(Record(meta, raw, decode(raw, ClickEvent, max_bytes=MAX_BYTES)))
    for i in range(0, len(records), 64):
        await handle_clicks(records[i : i + 64], ctx)
    return [f"u{u}" for u, _ in picked]


async def simulate(
    ctx: Context,
    clock: SimClock,
    book: CampaignBook,
    market: Market,
    users: Sequence[str],
    args: argparse.Namespace,
) -> Day:
    day = Day(ctx, clock, book, market, args.seed)
    start = clock.now()
    order = list(users)
    np.random.default_rng(args.seed).shuffle(order)
    served = 0
    for hour in range(24):
        n = round(args.requests * HOURLY_SHARE[hour])
        batches = max(1, -(-n // args.batch))
        for b in range(batches):
            size = n * (b + 1) // batches - n * b // batches
            at = start + timedelta(hours=hour, seconds=(b + 0.5) * 3600 / batches)
            await day.notices(at)
            clock.at = at
            await day.bids([order[(served + i) % len(order)] for i in range(size)], served)
            served += size
        print(f"  {hour:02d}h: {day.hours[hour].requests} requests, {day.hours[hour].bids} bids", flush=True)
    # the day's last notices, then the timer past the timeout for the unrendered wins
    end = start + timedelta(days=1)
    await day.notices(end)
    clock.at = end + timedelta(seconds=ctx.settings.notice_timeout_s * 2)
    for _ in range(4):
        await day.notices(clock.at)
    return day


def report(day: Day, book: CampaignBook, start: datetime) -> dict[str, Any]:
    budget = sum(round(c.daily_budget * MICROS) for c in book.active)
    rows, spent = [], 0
    by_campaign: Counter[str] = Counter()
    for h, hour in enumerate(day.hours):
        spent += hour.spend_micros
        by_campaign.update(hour.spend_by_campaign)
        end = start + timedelta(hours=h + 1) - timedelta(microseconds=1)
        targets = {c.id: round(c.daily_budget * MICROS) * c.pacing.fraction(end) for c in book.active}
        target = sum(targets.values())
        rows.append(
            {
                "hour": h,
                "requests": hour.requests,
                "bids": hour.bids,
                "won": hour.won,
                "billed": hour.billed,
                "win_rate": hour.won / hour.bids if hour.bids else None,
                "spend": hour.spend_micros / MICROS,
                "cumulative_spend": spent / MICROS,
                "cumulative_target": target / MICROS,
                "spend_over_target": spent / target if target else None,
                "by_campaign": {
                    cid: {"cumulative_spend": by_campaign[cid] / MICROS, "cumulative_target": t / MICROS}
                    for cid, t in targets.items()
                },
                "mean_bid_cpm": _mean(hour.bid_cpm),
                "mean_clearing_over_bid": _mean(hour.ratio),
                "mean_min_to_win_over_clearing": _mean(hour.need),
                "mean_shading_factor": _mean(hour.factor),
                "no_bids": dict(hour.nbr.most_common()),
                "outcomes": dict(hour.outcomes),
            }
        )
    bids = sum(h.bids for h in day.hours)
    won = sum(h.won for h in day.hours)
    nbr: Counter[str] = Counter()
    for tally in day.hours:
        nbr.update(tally.nbr)
    return {
        "requests": sum(h.requests for h in day.hours),
        "bids": bids,
        "won": won,
        "win_rate": won / bids if bids else None,
        "billed": sum(h.billed for h in day.hours),
        "spend": spent / MICROS,
        "daily_budget": budget / MICROS,
        "spend_over_budget": spent / budget if budget else None,
        "mean_clearing_over_bid": _mean([r for h in day.hours for r in h.ratio]),
        "mean_min_to_win_over_clearing": _mean([r for h in day.hours for r in h.need]),
        "mean_shading_factor": _mean([f for h in day.hours for f in h.factor]),
        "no_bids": dict(nbr.most_common()),
        "campaigns": {
            c.id: {
                "daily_budget": c.daily_budget,
                "pacing": c.pacing.mode,
                "spend": day.spend_by_campaign[c.id] / MICROS,
                "budget_exhausted_at": _at(day.exhausted.get(c.id)),
                "first_budget_no_bid_at": _at(day.first_504.get(c.id)),
            }
            for c in book.active
        },
        "notice_desk": dict(sorted(day.desk_answers.items())),
        "dead_letters": dict(day.dead_letters),
        "hours": rows,
    }


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _at(when: datetime | None) -> str | None:
    return None if when is None else when.strftime("%H:%M:%S")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the local stack's Triton (only it: nothing here uses Kafka), run the day, stop it."""
    stack = LocalStack()
    print("starting the local stack's Triton...", flush=True)
    stack.triton.start()
    try:
        settings = stack.settings()
        models = TritonModels(settings, TextTokenizer(settings.tokenizer_path, settings.max_seq_len))
        await models.wait_ready(120)
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        clock = SimClock(start - timedelta(hours=1))
        ctx = Context(
            settings=settings,
            models=models,
            profiles={},
            replies=ReplyIndex(load_catalogue()),
            now=clock.now,
        )
        try:
            users = await feed_history(ctx, clock, args.users, args.seed)
            clock.at = start
            book = scaled_book(args.budget_scale)
            market = Market(MarketConfig(auction_type=args.auction_type), args.seed)
            began = time.monotonic()
            day = await simulate(ctx, clock, book, market, users, args)
            wall_s = time.monotonic() - began
        finally:
            await models.close()
    finally:
        stack.triton.stop()
    return {
        "mode": "day",
        "seed": args.seed,
        "simulated_day": start.date().isoformat(),
        "users": len(users),
        "budget_scale": args.budget_scale,
        "market": market.config.describe(),
        "recommender_calls": models.calls,
        "wall_s": wall_s,
        "result": report(day, book, start),
    }
