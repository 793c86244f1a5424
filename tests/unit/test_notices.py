"""Notices settle the bids' reservations: billed once at the clearing price, released on a loss or
after the notice timeout, and every notice that is not ours, late, forged or contradictory is a
dead letter that charges nothing. The bids come from the real bid handler (scripted recommender),
and the notices from their signed URLs, verified as the gateway verifies them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from streams.app import routes
from streams.campaigns import CampaignBook, FrequencyCap, load_campaigns
from streams.dlq import HEADER_REASON, DeadLetter, RecordMeta
from streams.handlers.common import Output, Record
from streams.handlers.notices import ExpirySweep, find_expired, handle_ad_events, write_expired
from streams.metrics import WorkerMetrics
from streams.schemas import BidResponse
from streams.schemas.adevents import AdEvent, AdOutcome, NoticeKind
from streams.schemas.bids import Bid, NoBidReason
from streams.serde import decode, encode
from streams.settings import Settings
from streams.tables import Tables
from tests.unit.test_bidder import AVOCADO, Bidder, campaign, request

TIMEOUT_S = 600.0


class Market(Bidder):
    """The bidder plus the notice route on the same state: bids, then notices about them."""

    def __init__(self, *, cap: int | None = None, budget: float = 1000.0) -> None:
        avo = campaign(
            "avo",
            [AVOCADO],
            value_per_conversion=1.0,
            max_cpm=2.0,  # every bid is 2 CPM: 2000 millionths reserved
            daily_budget=budget,
            frequency_cap=FrequencyCap(impressions=cap, window_s=86_400) if cap else None,
        )
        super().__init__(CampaignBook(campaigns=[avo]))
        self.ctx.settings = Settings(partitions=1, notice_timeout_s=TIMEOUT_S)
        self.know("u1")
        self.notice_offset = 0
        self.tally: list[tuple[str, str]] = []

    async def bid(self, **top: Any) -> Bid:
        response = await self.one(request("u1", **top))
        assert response.seatbid, response.ext.reasons
        return response.seatbid[0].bid[0]

    def event(self, bid: Bid, kind: NoticeKind, **macros: str) -> AdEvent:
        """What the gateway writes for a call of the bid's notice URL with these macro values."""
        url = {NoticeKind.WIN: bid.nurl, NoticeKind.BILLING: bid.burl, NoticeKind.LOSS: bid.lurl}[kind]
        assert url is not None
        query = {**dict(parse_qsl(urlsplit(url).query)), **macros}
        ticket = self.ctx.settings.notice_signer().verify(kind, query)
        price, mtw, loss = query.get("price"), query.get("mtw"), query.get("loss")

        def number(value: str | None) -> float | None:
            return None if value is None or value.startswith("${") or value == "AUDIT" else float(value)

        return ticket.event(
            kind,
            self.clock.now,
            price=number(price),
            min_to_win=number(mtw),
            loss=None if loss is None or loss.startswith("${") else int(loss),
            audit="AUDIT" in query.values(),
        )

    def notice_record(self, event: AdEvent, *, offset: int | None = None, partition: int = 0) -> Record:
        if offset is None:
            offset, self.notice_offset = self.notice_offset, self.notice_offset + 1
        raw = encode(event)
        meta = RecordMeta("ad-events", partition, offset, event.user.encode(), (), None)
        return Record(meta, raw, decode(raw, AdEvent, max_bytes=65536))

    async def notify(self, *records: Record) -> list[Output | DeadLetter]:
        def tally(kind: str, result: str) -> None:
            self.tally.append((kind, result))

        return await handle_ad_events(list(records), self.ctx, self.book, self.state, tally)

    async def settle(self, event: AdEvent) -> list[Output | DeadLetter]:
        return await self.notify(self.notice_record(event))

    def held(self) -> int:
        return sum(self.state.get("p0/hold/avo", {}).values())

    def spent(self) -> int:
        return int(self.state.get("p0/spend/avo", {}).get("micros", 0))


def outcomes(out: list[Output | DeadLetter]) -> list[AdOutcome]:
    assert all(isinstance(o, Output) and o.topic == "ad-outcomes" for o in out), out
    return [AdOutcome.model_validate(orjson.loads(o.value)) for o in out if isinstance(o, Output)]


def reason_of(out: list[Output | DeadLetter]) -> str:
    assert len(out) == 1 and isinstance(out[0], DeadLetter) and out[0].topic == "ad-events.dlq"
    return dict(out[0].headers)[HEADER_REASON].decode()


async def test_a_bid_reserves_its_cost_and_carries_signed_notice_urls() -> None:
    market = Market(cap=1)
    bid = await market.bid()
    assert bid.price == 2.0 and market.held() == 2000 and market.spent() == 0
    for kind in NoticeKind:  # each URL verifies for its own kind and names the bid
        event = market.event(bid, kind)
        assert (event.bid_id, event.campaign, event.user, event.partition) == (bid.id, "avo", "u1", 0)
    assert market.state["p0/freq/u1"] == {"avo": [market.event(bid, NoticeKind.WIN).issued_ms]}
    # the slot is taken: the cap of 1 refuses the next request until the bid is settled
    assert (await market.one(request("u1"))).nbr == NoBidReason.FREQUENCY_CAPPED


async def test_won_auction_is_billed_once_at_the_clearing_price() -> None:
    market = Market()
    bid = await market.bid()
    won = outcomes(await market.settle(market.event(bid, NoticeKind.WIN, price="1.25", mtw="1.2")))
    assert [(o.kind, o.charged_micros) for o in won] == [("won", 0)]
    assert market.held() == 2000 and market.spent() == 0  # a win does not book: the billing does
    billing = market.notice_record(market.event(bid, NoticeKind.BILLING, price="1.25"))
    billed = outcomes(await market.notify(billing))
    # 1.25 CPM = 1.25 x 1e6 / 1000 = 1250 millionths; the 2000 reservation released
    assert [(o.outcome_id, o.charged_micros, o.released_micros, o.clearing_price) for o in billed] == [
        (f"billed:{bid.id}", 1250, 2000, 1.25)
    ]
    assert (market.spent(), market.held()) == (1250, 0)
    # the exchange delivers it again (a new record): booked once, counted as a duplicate
    assert await market.settle(market.event(bid, NoticeKind.BILLING, price="1.25")) == []
    assert (market.spent(), market.held()) == (1250, 0)
    # the same record read again after a crash: the same outcome again, nothing booked
    assert outcomes(await market.notify(billing)) == billed
    assert market.spent() == 1250
    assert market.tally == [
        ("win", "won"),
        ("billing", "billed"),
        ("billing", "duplicate"),
        ("billing", "replayed"),
    ]


async def test_first_price_billing_without_a_price_books_our_bid() -> None:
    market = Market()
    bid = await market.bid(at=1)
    billed = outcomes(await market.settle(market.event(bid, NoticeKind.BILLING)))
    assert [(o.clearing_price, o.charged_micros) for o in billed] == [(bid.price, round(bid.price * 1000))]


async def test_a_loss_releases_the_reservation_and_the_frequency_slot() -> None:
    market = Market(cap=1)
    bid = await market.bid()
    lost = outcomes(await market.settle(market.event(bid, NoticeKind.LOSS, loss="102", mtw="2.5")))
    assert [(o.kind, o.loss, o.min_to_win, o.released_micros, o.charged_micros) for o in lost] == [
        ("lost", 102, 2.5, 2000, 0)
    ]
    assert (market.held(), market.spent()) == (0, 0)
    assert "p0/freq/u1" not in market.state
    assert (await market.one(request("u1"))).seatbid  # the cap's slot is free again


async def test_audit_notices_are_counted_and_never_charged() -> None:
    market = Market()
    bid = await market.bid()
    assert await market.settle(market.event(bid, NoticeKind.BILLING, price="AUDIT")) == []
    assert (market.spent(), market.held()) == (0, 2000) and market.tally == [("billing", "audit")]


async def test_an_expired_reservation_is_released_by_the_timer_with_an_outcome() -> None:
    market = Market(cap=1)
    bid = await market.bid()
    settings = market.ctx.settings
    market.clock.advance(TIMEOUT_S - 1)
    early = find_expired(
        market.state, list(market.state), now=market.clock.now, settings=settings, partitions={0}
    )
    assert early.outcomes == [] and early.keys == []
    market.clock.advance(1)
    due = ExpirySweep(market.state).step(market.clock.now, settings, {0})
    assert [(o.kind, o.released_micros, o.outcome_id) for o in outcomes(due.outcomes)] == [
        ("expired", 2000, f"expired:{bid.id}")
    ]
    assert market.held() == 2000  # nothing written before the outcomes are published
    assert (
        find_expired(market.state, due.keys, now=market.clock.now, settings=settings, partitions={1}).keys
        == []
    )
    assert write_expired(market.state, due, now=market.clock.now, settings=settings) == 1
    assert market.held() == 0 and not [k for k in market.state if "/resv/" in k or "/freq/" in k]
    # a notice after the timeout is dead-lettered and books nothing
    assert (
        reason_of(await market.settle(market.event(bid, NoticeKind.BILLING, price="1"))) == "notice_expired"
    )
    assert market.spent() == 0


async def test_expired_reservations_never_block_the_budget_before_the_timer_runs() -> None:
    market = Market(budget=0.002)  # exactly one 2000-millionth bid
    await market.bid()
    assert (await market.one(request("u1"))).nbr == NoBidReason.BUDGET_EXHAUSTED
    # the timer has not run; once every reservation of the bid's bucket is past the timeout
    # (one bucket of timeout / 32 after the bid's, at most), the bid path no longer counts it
    market.clock.advance(TIMEOUT_S + TIMEOUT_S / 32)
    assert any("/resv/" in k for k in market.state)
    assert (await market.one(request("u1"))).seatbid


async def test_tombstones_are_deleted_after_the_timeout_without_an_outcome() -> None:
    market = Market()
    bid = await market.bid()
    await market.settle(market.event(bid, NoticeKind.LOSS))
    market.clock.advance(TIMEOUT_S)
    due = find_expired(
        market.state, list(market.state), now=market.clock.now, settings=market.ctx.settings, partitions={0}
    )
    assert due.outcomes == [] and due.keys == [f"p0/resv/{bid.id}"]
    assert write_expired(market.state, due, now=market.clock.now, settings=market.ctx.settings) == 0
    assert f"p0/resv/{bid.id}" not in market.state


async def test_forged_mismatched_and_contradicting_notices_are_dead_lettered_and_never_charged() -> None:
    market = Market()
    bid = await market.bid()
    real = market.event(bid, NoticeKind.BILLING, price="1.5")
    cases = {
        "notice_mismatch": real.model_copy(update={"campaign": "other"}),
        "unknown_bid": real.model_copy(update={"bid_id": "never:1"}),
        "price_above_bid": real.model_copy(update={"price": 2.5}),
    }
    for reason, event in cases.items():
        assert reason_of(await market.settle(event)) == reason
    assert reason_of(await market.notify(market.notice_record(real, partition=1))) == "wrong_partition"
    assert (market.spent(), market.held()) == (0, 2000)
    outcomes(await market.settle(real))
    # a loss after the billing contradicts it
    assert reason_of(await market.settle(market.event(bid, NoticeKind.LOSS))) == "notice_conflict"
    assert (market.spent(), market.held()) == (1500, 0)
    # a test request's bid reserved nothing: its notice is not ours to book
    test_bid = await market.bid(test=1)
    assert reason_of(await market.settle(market.event(test_bid, NoticeKind.BILLING))) == "unknown_bid"
    assert market.spent() == 1500


@pytest.mark.parametrize("at", [1, 2])
async def test_a_win_after_billing_and_out_of_order_notices_book_once(at: int) -> None:
    market = Market()
    bid = await market.bid(at=at)
    await market.settle(market.event(bid, NoticeKind.BILLING, price="1"))
    assert await market.settle(market.event(bid, NoticeKind.WIN, price="1")) == []
    assert market.tally[-1] == ("win", "late_win") and market.spent() == 1000


async def test_outcomes_are_keyed_by_user_and_the_bid_time_is_the_record_s() -> None:
    market = Market()
    stamped = int((market.clock.now - timedelta(milliseconds=40)).timestamp() * 1000)
    response = await market.answer(market.record(request("u1"), ts_ms=stamped))
    bid = response[0].seatbid[0].bid[0]
    [out] = await market.settle(market.event(bid, NoticeKind.WIN))
    assert isinstance(out, Output) and out.key == "u1"
    assert int(AdOutcome.model_validate(orjson.loads(out.value)).bid_at.timestamp() * 1000) == stamped


def test_bid_response_still_validates_with_notice_urls() -> None:
    assert "nurl" in BidResponse.model_json_schema()["$defs"]["Bid"]["properties"]


def test_every_consumed_topic_has_a_route_and_notices_share_the_bid_ledger() -> None:
    settings = Settings()
    ledger: dict[str, Any] = {}
    tables = Tables(profiles=cast(Any, {}), brand_windows=cast(Any, {}), ledger=cast(Any, ledger))
    by_topic = routes(settings, tables, load_campaigns(), WorkerMetrics())
    assert set(by_topic) == set(settings.topics.consumed)
    assert by_topic[settings.topics.ad_events].model is AdEvent


async def test_notices_and_outcomes_are_counted() -> None:
    metrics = WorkerMetrics()
    market = Market()
    bid = await market.bid()
    out = await handle_ad_events(
        [market.notice_record(market.event(bid, NoticeKind.LOSS))],
        market.ctx,
        market.book,
        market.state,
        metrics.notice,
    )
    metrics.published(out)
    assert (
        metrics.registry.get_sample_value(
            "marketing_scorer_ad_notices_total", {"kind": "loss", "result": "lost"}
        )
        == 1
    )
    assert metrics.registry.get_sample_value("marketing_scorer_ad_outcomes_total", {"kind": "lost"}) == 1
