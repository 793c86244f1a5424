"""The bidder, driven in memory: pricing, campaign choice, blocks, budgets, pacing, frequency caps,
deadlines and the state it keeps. Time is injected (`Context.now` and `Context.monotonic`, one
fake clock), the recommender is scripted."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from streams.campaigns import (
    Campaign,
    CampaignBook,
    Creative,
    FrequencyCap,
    Pacing,
    Product,
    load_campaigns,
)
from streams.dlq import RecordMeta
from streams.errors import RetryableInference
from streams.handlers.bids import FORMULA, handle_bids
from streams.handlers.common import Context, Output, Record
from streams.inference import Recommendations
from streams.pacing import Ledger, partition_of
from streams.schemas import BidRequest, BidResponse
from streams.schemas.bids import MarkupType, NoBidReason
from streams.segments import RULES
from streams.serde import decode
from streams.settings import Settings
from tests.fakes import REC_MODEL
from tests.unit.test_handlers import make_ctx

DATA = Path(__file__).resolve().parent.parent / "data" / "openrtb"
MIDDAY = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# Instacart ids: the scripted top recommendations of every user in these tests
AVOCADO, ORGANIC_AVOCADO, BANANA, LIMES, LEMON, MILK = 47209, 47766, 24852, 26209, 47626, 27845
TOP = [AVOCADO, BANANA, ORGANIC_AVOCADO, LIMES, LEMON, MILK, *range(1, 15)]
SCORES = [0.08, 0.05, 0.03, 0.02, 0.01, 0.005, *([0.001] * 14)]


class ScriptedRecommender:
    """Every history gets the same top 20; records the calls and the deadlines it was given."""

    def __init__(
        self, items: Sequence[int] = TOP, scores: Sequence[float] = SCORES, *, takes_s: float = 0.0
    ) -> None:
        self.items = np.asarray(items, dtype=np.int64)
        self.scores = np.asarray(scores, dtype=np.float32)
        self.takes_s = takes_s  # how far a call moves the bidder's clock
        self.clock: Clock | None = None
        self.fail: Exception | None = None
        self.calls: list[list[list[int]]] = []
        self.deadlines: list[float | None] = []

    async def score_texts(self, texts: Sequence[str], *, deadline_s: float | None = None) -> Any:
        raise AssertionError("the bidder never scores texts")

    async def recommend(
        self, histories: Sequence[Sequence[int]], *, deadline_s: float | None = None
    ) -> Recommendations:
        self.calls.append([list(h) for h in histories])
        self.deadlines.append(deadline_s)
        if self.clock is not None:
            self.clock.advance(self.takes_s)
        if self.fail is not None:
            raise self.fail
        n = len(histories)
        items, scores = np.tile(self.items, (n, 1)), np.tile(self.scores, (n, 1))
        return Recommendations(items=items, scores=scores, model=REC_MODEL)


class Clock:
    """The wall clock (`now`) and the monotonic one, moved together by `advance`; setting `now`
    alone is a wall-clock step, which the monotonic clock does not see."""

    def __init__(self, now: datetime = MIDDAY) -> None:
        self.now = now
        self.mono = 5_000.0  # any origin: only differences count

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def banner(crid: str, w: int = 300, h: int = 250) -> Creative:
    return Creative(crid=crid, format="banner", w=w, h=h, mimes=["image/png"])


def campaign(cid: str, products: Sequence[int], **kw: Any) -> Campaign:
    fields: dict[str, Any] = {
        "id": cid,
        "adomain": [f"{cid}.example"],
        "cat": ["IAB8"],
        "products": [Product(id=p, name=str(p)) for p in products],
        "value_per_conversion": 0.02,
        "shade": 0.8,
        "max_cpm": 20.0,
        "daily_budget": 1000.0,
        "pacing": Pacing(mode="asap"),
        "creatives": [banner(f"{cid}-300x250")],
    }
    fields.update(kw)
    return Campaign(**fields)


class Bidder:
    """One worker's bidder: a context, the state, a clock, and records with growing offsets."""

    def __init__(self, book: CampaignBook, models: ScriptedRecommender | None = None) -> None:
        self.models = models or ScriptedRecommender()
        self.clock = Clock()
        self.ctx: Context = make_ctx()
        self.ctx.models = self.models
        self.ctx.now = self.clock
        self.ctx.monotonic = self.clock.monotonic
        self.models.clock = self.clock
        self.ctx.settings = Settings(partitions=1)
        self.book = book
        self.state: dict[str, Any] = {}
        self.offset = 0

    def know(self, user: str, segments: Sequence[str] = ()) -> None:
        self.ctx.profiles[user] = {
            "recent_items": [AVOCADO, BANANA],
            "segments": list(segments),
            "version": 1,
        }

    def record(self, body: dict[str, Any], *, ts_ms: int | None = None, offset: int | None = None) -> Record:
        if offset is None:
            offset, self.offset = self.offset, self.offset + 1
        raw = orjson.dumps(body)
        meta = RecordMeta("bid-requests", 0, offset, b"k", (), ts_ms)
        return Record(meta, raw, decode(raw, BidRequest, max_bytes=65536))

    async def answer(self, *records: Record) -> list[BidResponse]:
        outcomes = await handle_bids(list(records), self.ctx, self.book, self.state)
        assert all(isinstance(o, Output) and o.topic == "ad-bids" for o in outcomes)
        return [BidResponse.model_validate(orjson.loads(o.value)) for o in outcomes if isinstance(o, Output)]

    async def one(self, body: dict[str, Any], **kw: Any) -> BidResponse:
        return (await self.answer(self.record(body, **kw)))[0]


def request(user: str = "u1", *, imps: list[dict[str, Any]] | None = None, **top: Any) -> dict[str, Any]:
    return {
        "id": f"req-{user}-{time.monotonic_ns()}",
        "imp": imps or [{"id": "1", "bidfloor": 0.1, "banner": {"w": 300, "h": 250}}],
        "site": {"id": "s1", "domain": "recipes.example"},
        "user": {"id": user},
        **top,
    }


def read_json(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())


def reasons(response: BidResponse) -> str:
    return "\n".join(response.ext.reasons)


# --- pricing --------------------------------------------------------------------------------------


async def test_high_propensity_gets_a_bid_priced_exactly_by_the_formula() -> None:
    avo = campaign("avo", [AVOCADO, ORGANIC_AVOCADO], segment_boost={"high_intent": 0.4, "churn_risk": 1.0})
    bidder = Bidder(CampaignBook(campaigns=[avo]))
    bidder.know("u1", segments=["high_intent", "new_visitor"])
    response = await bidder.one(request("u1"))

    s = [float(np.float32(x)) for x in SCORES]  # what the model returns, as the handler reads it
    base = 0 + s[0] + s[2]  # the campaign's two products, in rank order
    propensity = min(1.0, base * (1 + 0.4))  # only high_intent boosts
    price = round(min(20.0, propensity * 0.02 * 1000 * 0.8), 4)
    assert response.nbr is None and len(response.seatbid) == 1
    bid = response.seatbid[0].bid[0]
    assert bid.price == price
    assert (bid.impid, bid.cid, bid.crid, bid.adomain, bid.cat) == (
        "1",
        "avo",
        "avo-300x250",
        ["avo.example"],
        ["IAB8"],
    )
    assert (bid.w, bid.h, bid.mtype) == (300, 250, MarkupType.BANNER)
    assert response.seatbid[0].seat == "marketing-scorer" and response.cur == "USD"
    assert response.bidid == response.ext.response_id == "bid:bid-requests/0/0"
    assert response.ext.propensity == round(propensity, 6)
    text = reasons(response)
    assert response.ext.reasons[0] == FORMULA
    assert "imp:1:bid:campaign=avo:crid=avo-300x250" in text
    assert f"items={AVOCADO}:{s[0]:.6f}+{ORGANIC_AVOCADO}:{s[2]:.6f} segments=high_intent" in text
    assert f"price:min(20,{propensity:.6f}*0.02*1000*0.8)={price:g}:floor=0.1USD" in text


async def test_price_is_capped_at_max_cpm() -> None:
    bidder = Bidder(
        CampaignBook(campaigns=[campaign("avo", [AVOCADO], value_per_conversion=5.0, max_cpm=3.5)])
    )
    bidder.know("u1")
    assert (await bidder.one(request("u1"))).seatbid[0].bid[0].price == 3.5


async def test_store_wide_campaign_counts_the_whole_top_20() -> None:
    bidder = Bidder(CampaignBook(campaigns=[campaign("house", [])]))
    bidder.know("u1")
    response = await bidder.one(request("u1"))
    total = sum(float(np.float32(x)) for x in SCORES)
    assert response.ext.propensity == round(total, 6)


async def test_best_price_wins_the_imp_and_the_others_are_explained() -> None:
    book = CampaignBook(
        campaigns=[campaign("limes", [LIMES]), campaign("avo", [AVOCADO]), campaign("milk", [99999])]
    )
    bidder = Bidder(book)
    bidder.know("u1")
    response = await bidder.one(request("u1"))
    assert [b.cid for sb in response.seatbid for b in sb.bid] == ["avo"]
    assert "imp:1:skip:no_propensity:milk:no_product_in_top20" in reasons(response)
    assert "imp:1:outbid:limes:price=0.32" in reasons(response)


async def test_each_imp_gets_its_own_winner_grouped_by_seat() -> None:
    book = CampaignBook(
        campaigns=[
            campaign("avo", [AVOCADO], seat="avocado-board"),
            campaign("limes", [LIMES], seat="citrus", creatives=[banner("limes-728x90", 728, 90)]),
        ]
    )
    bidder = Bidder(book)
    bidder.know("u1")
    imps = [
        {"id": "top", "banner": {"format": [{"w": 728, "h": 90}, {"w": 970, "h": 90}]}},
        {"id": "side", "banner": {"w": 300, "h": 250}},
    ]
    response = await bidder.one(request("u1", imps=imps))
    seats = {sb.seat: [(b.impid, b.cid) for b in sb.bid] for sb in response.seatbid}
    assert seats == {"citrus": [("top", "limes")], "avocado-board": [("side", "avo")]}


async def test_below_the_floor_is_a_no_bid_with_the_price_that_was_not_enough() -> None:
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO], max_cpm=2.0)]))
    bidder.know("u1")
    response = await bidder.one(
        request("u1", imps=[{"id": "1", "bidfloor": 2.5, "banner": {"w": 300, "h": 250}}])
    )
    assert response.nbr == NoBidReason.BELOW_FLOOR and not response.seatbid
    assert response.ext.reasons[0] == "below_floor"
    assert "avo:price=1.28<floor=2.5:min(2,0.080000*0.02*1000*0.8)=1.28" in reasons(response)


async def test_a_floor_in_another_currency_is_not_converted() -> None:
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO])]))
    bidder.know("u1")
    imp = {"id": "1", "bidfloor": 0.1, "bidfloorcur": "EUR", "banner": {"w": 300, "h": 250}}
    response = await bidder.one(request("u1", imps=[imp]))
    assert response.nbr == NoBidReason.CURRENCY_NOT_SUPPORTED
    assert "imp:1:skip:floor_currency:EUR!=USD" in reasons(response)
    response = await bidder.one(request("u1", cur=["EUR", "GBP"]))
    assert response.nbr == NoBidReason.CURRENCY_NOT_SUPPORTED
    assert response.ext.reasons == ["currency_not_allowed:EUR,GBP"]
    assert (await bidder.one(request("u1", cur=["EUR", "USD"]))).seatbid  # USD allowed: bid in USD


async def test_video_floor_follows_the_duration_floors() -> None:
    video = Creative(crid="v15", format="video", mimes=["video/mp4"], duration_s=15, protocols=[3])
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO], max_cpm=5.0, creatives=[video])]))
    bidder.know("u1")
    imp = {
        "id": "1",
        "bidfloor": 0.5,
        "video": {
            "mimes": ["video/mp4"],
            "protocols": [3, 7],
            "rqddurs": [15, 30],
            "durfloors": [{"maxdur": 15, "bidfloor": 6.0}, {"mindur": 16, "bidfloor": 9.0}],
        },
    }
    response = await bidder.one(request("u1", imps=[imp]))
    assert response.nbr == NoBidReason.BELOW_FLOOR and "floor=6" in reasons(response)
    imp["video"]["durfloors"] = [{"mindur": 16, "bidfloor": 9.0}]  # 15 s falls back to the imp's floor
    response = await bidder.one(request("u1", imps=[imp]))
    bid = response.seatbid[0].bid[0]
    assert (bid.mtype, bid.dur, bid.crid) == (MarkupType.VIDEO, 15, "v15")


# --- the request's own rules ----------------------------------------------------------------------


async def test_blocked_advertiser_or_category_leaves_the_imp_to_another_campaign() -> None:
    book = CampaignBook(
        campaigns=[
            campaign("avo", [AVOCADO], adomain=["shop.avo.example"], cat=["IAB8-15"]),
            campaign("limes", [LIMES], cat=["IAB8-5"]),
        ]
    )
    bidder = Bidder(book)
    bidder.know("u1")
    response = await bidder.one(request("u1", badv=["avo.example"]))  # a parent domain blocks its subdomains
    assert [b.cid for b in response.seatbid[0].bid] == ["limes"]
    assert "imp:1:skip:blocked:avo:badv:avo.example" in reasons(response)
    response = await bidder.one(request("u1", bcat=["IAB8"]))  # tier 1 blocks its tier-2 children
    assert response.nbr == NoBidReason.BLOCKED_BY_REQUEST and response.ext.reasons[0] == "blocked"
    assert "avo:bcat:IAB8" in reasons(response) and "limes:bcat:IAB8" in reasons(response)
    response = await bidder.one(request("u1", acat=["IAB8-5"]))
    assert [b.cid for b in response.seatbid[0].bid] == ["limes"]


async def test_excluded_segments_and_paused_campaigns_do_not_bid() -> None:
    book = CampaignBook(
        campaigns=[
            campaign("house", [], exclude_segments=["detractor"]),
            campaign("avo", [AVOCADO], active=False),
        ]
    )
    bidder = Bidder(book)
    bidder.know("angry", segments=["detractor"])
    response = await bidder.one(request("angry"))
    assert response.nbr == NoBidReason.NO_PROPENSITY
    assert response.ext.reasons == ["audience_excluded", "imp:1:skip:audience_excluded:house:detractor"]
    paused = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO], active=False)]))
    paused.know("u1")
    response = await paused.one(request("u1"))
    assert response.nbr == NoBidReason.NO_ACTIVE_CAMPAIGN and paused.models.calls == []


async def test_seat_lists_are_honoured() -> None:
    book = CampaignBook(campaigns=[campaign("avo", [AVOCADO], seat="avo-seat"), campaign("limes", [LIMES])])
    bidder = Bidder(book)
    bidder.know("u1")
    response = await bidder.one(request("u1", wseat=["marketing-scorer"]))
    assert [b.cid for b in response.seatbid[0].bid] == ["limes"]
    response = await bidder.one(request("u1", bseat=["avo-seat", "marketing-scorer"]))
    assert response.nbr == NoBidReason.BLOCKED_BY_REQUEST


async def test_spec_example_3_blocks_the_cocktail_campaign_and_the_house_ad_buys_the_leaderboard() -> None:
    bidder = Bidder(load_campaigns(), ScriptedRecommender(items=[LIMES, LEMON, *TOP[:18]]))
    body = read_json(DATA / "valid-spec-6.2.3-mobile-app.json")
    bidder.know(body["user"]["id"])
    response = await bidder.one(body)
    bid = response.seatbid[0].bid[0]
    assert (bid.cid, bid.crid, bid.w, bid.h) == ("house-grocery", "house-grocery-728x90", 728, 90)
    assert "citrus-happy-hour:bcat:IAB8-5" in reasons(response)
    assert bid.price >= 0.5  # the example's floor


async def test_a_private_auction_without_our_deal_is_a_no_bid() -> None:
    bidder = Bidder(load_campaigns())
    body = read_json(DATA / "valid-spec-6.2.5-pmp-direct-deal.json")
    bidder.know(body["user"]["id"])
    response = await bidder.one(body)
    assert response.nbr == NoBidReason.PRIVATE_AUCTION_NO_DEAL
    assert bidder.models.calls == []  # nothing to price: the model is not asked


@pytest.mark.parametrize(
    ("regs", "user_ext", "device", "expected"),
    [
        ({"coppa": 1}, None, None, "coppa_applies:no_behavioural_targeting"),
        ({"gdpr": 1}, None, None, "gdpr_applies_without_consent_string"),
        ({"ext": {"gdpr": 1}}, None, None, "gdpr_applies_without_consent_string"),
        ({"gdpr": 0}, None, {"lmt": 1}, "limit_ad_tracking"),
        ({"gdpr": 1}, {"consent": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"}, None, None),
    ],
)
async def test_privacy_signals(
    regs: dict, user_ext: dict | None, device: dict | None, expected: str | None
) -> None:
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO])]))
    bidder.know("u1")
    body = request("u1", regs=regs, **({"device": device} if device else {}))
    if user_ext:
        body["user"]["ext"] = user_ext
    response = await bidder.one(body)
    if expected is None:
        assert response.seatbid
    else:
        assert response.nbr == NoBidReason.PRIVACY_RESTRICTED and response.ext.reasons == [expected]
        assert bidder.models.calls == []


async def test_unknown_users_and_requests_without_a_type_are_answered_without_the_model() -> None:
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO])]))
    bidder.know("u1")
    no_user = request("u1")
    del no_user["user"]
    answers = await bidder.answer(
        bidder.record(request("stranger")),
        bidder.record(no_user),
        bidder.record(request("u1", imps=[{"id": "1"}])),
    )
    assert [(a.nbr, a.ext.reasons[0]) for a in answers] == [
        (NoBidReason.UNMATCHED_USER, "no_history_for_user"),
        (NoBidReason.UNMATCHED_USER, "no_user_id"),
        (NoBidReason.INVALID_REQUEST, "no_imp_offers_banner_video_audio_or_native"),
    ]
    assert bidder.models.calls == []


# --- budgets, pacing, frequency -------------------------------------------------------------------


async def test_budget_exhaustion_stops_bidding_until_the_next_day() -> None:
    # 2 CPM = 2000 millionths per impression; a 0.005 budget buys two of them
    avo = campaign("avo", [AVOCADO], value_per_conversion=1.0, max_cpm=2.0, daily_budget=0.005)
    bidder = Bidder(CampaignBook(campaigns=[avo]))
    bidder.know("u1")
    answers = [await bidder.one(request("u1")) for _ in range(3)]
    assert [a.seatbid[0].bid[0].price if a.seatbid else a.nbr for a in answers] == [
        2.0,
        2.0,
        NoBidReason.BUDGET_EXHAUSTED,
    ]
    assert answers[2].ext.reasons[0] == "out_of_budget"
    # the two open reservations count like spend: 2 x 2000 held, nothing booked yet
    assert "spent=4000+2000>share=5000_micros" in reasons(answers[2])
    assert "p0/spend/avo" not in bidder.state
    assert sum(bidder.state["p0/hold/avo"].values()) == 4000
    bidder.clock.now += timedelta(days=1)  # the reservations are long past the notice timeout
    assert (await bidder.one(request("u1"))).seatbid


async def test_even_pacing_keeps_spend_behind_the_clock() -> None:
    # share 0.0864 = 86400 millionths a day, 1 per second; a bid costs 2000 (2 CPM)
    avo = campaign(
        "avo",
        [AVOCADO],
        value_per_conversion=1.0,
        max_cpm=2.0,
        daily_budget=0.0864,
        pacing=Pacing(mode="even", burst=0),
    )
    bidder = Bidder(CampaignBook(campaigns=[avo]))
    bidder.know("u1")
    bidder.clock.now = datetime(2026, 11, 23, 0, 0, 0, tzinfo=UTC)  # nothing allowed yet
    early = await bidder.one(request("u1"))
    assert early.nbr == NoBidReason.PACING_LIMITED and early.ext.reasons[0] == "ahead_of_pace"
    assert bidder.models.calls == []  # no room at all: decided before pricing
    bidder.clock.now = datetime(2026, 11, 23, 0, 0, 30, tzinfo=UTC)  # 30 allowed, 2000 needed
    response = await bidder.one(request("u1"))
    assert response.nbr == NoBidReason.PACING_LIMITED
    assert "spent=0+2000>allowed_now=30_micros" in reasons(response)
    bidder.clock.now = datetime(2026, 11, 23, 0, 40, tzinfo=UTC)  # 2400 allowed
    assert (await bidder.one(request("u1"))).seatbid
    assert (await bidder.one(request("u1"))).nbr == NoBidReason.PACING_LIMITED  # 2000 spent, 4000 > 2400


async def test_frequency_cap_per_user_and_window() -> None:
    avo = campaign("avo", [AVOCADO], frequency_cap=FrequencyCap(impressions=2, window_s=3600))
    bidder = Bidder(CampaignBook(campaigns=[avo]))
    bidder.know("u1")
    bidder.know("u2")
    answers = [await bidder.one(request("u1")) for _ in range(3)]
    assert [bool(a.seatbid) for a in answers] == [True, True, False]
    assert answers[2].nbr == NoBidReason.FREQUENCY_CAPPED and answers[2].ext.reasons[0] == "frequency_capped"
    assert "skip:frequency_capped:avo:2/2_per_3600s" in reasons(answers[2])
    assert (await bidder.one(request("u2"))).seatbid  # another user is not capped
    bidder.clock.now += timedelta(seconds=3601)
    assert (await bidder.one(request("u1"))).seatbid


async def test_frequency_cap_counts_the_imps_of_one_request_and_of_one_batch() -> None:
    avo = campaign("avo", [AVOCADO], frequency_cap=FrequencyCap(impressions=1, window_s=3600))
    bidder = Bidder(CampaignBook(campaigns=[avo]))
    bidder.know("u1")
    imps = [{"id": "1", "banner": {"w": 300, "h": 250}}, {"id": "2", "banner": {"w": 300, "h": 250}}]
    response = await bidder.one(request("u1", imps=imps))
    assert [b.impid for sb in response.seatbid for b in sb.bid] == ["1"]
    assert "imp:2:skip:frequency_capped:avo:1/1_per_3600s" in reasons(response)
    bidder.know("u2")
    batch = await bidder.answer(bidder.record(request("u2")), bidder.record(request("u2")))
    assert [bool(a.seatbid) for a in batch] == [True, False]


async def test_test_requests_and_replays_are_not_charged() -> None:
    avo = campaign("avo", [AVOCADO], frequency_cap=FrequencyCap(impressions=1, window_s=3600))
    bidder = Bidder(CampaignBook(campaigns=[avo]))
    bidder.know("u1")
    tests = [await bidder.one(request("u1", test=1)) for _ in range(2)]
    assert all(t.seatbid for t in tests) and "test_mode:not_reserved" in reasons(tests[0])
    assert not [k for k in bidder.state if "/hold/" in k or "/resv/" in k or "/freq/" in k]
    live = bidder.record(request("u1"))
    assert (await bidder.answer(live))[0].seatbid
    held = dict(bidder.state["p0/hold/avo"])
    replayed = await bidder.answer(live)  # the same record again, as after a crash before the commit
    assert bidder.state["p0/hold/avo"] == held and len([k for k in bidder.state if "/resv/" in k]) == 1
    assert replayed[0].nbr == NoBidReason.FREQUENCY_CAPPED  # decided again, on the state it left


async def test_state_is_untouched_when_the_handler_fails() -> None:
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO])]))
    bidder.know("u1")
    bidder.models.fail = ValueError("a bug")
    with pytest.raises(ValueError):
        await bidder.answer(bidder.record(request("u1")))
    assert bidder.state == {}


async def test_state_is_partition_scoped_json() -> None:
    avo = campaign("avo", [AVOCADO], frequency_cap=FrequencyCap(impressions=3, window_s=60))
    bidder = Bidder(CampaignBook(campaigns=[avo]))
    bidder.ctx.settings = Settings(partitions=4)
    bidder.know("u1")
    raw = orjson.dumps(request("u1"))
    meta = RecordMeta("bid-requests", 3, 17, b"u1", (), None)
    body = decode(raw, BidRequest, max_bytes=65536)
    await bidder.answer(Record(meta, raw, body))
    assert sorted(bidder.state) == [
        "p3/applied/bid-requests",
        "p3/freq/u1",
        "p3/hold/avo",
        f"p3/resv/{body.id}:1",
    ]
    assert {partition_of(k) for k in bidder.state} == {3}
    assert orjson.loads(orjson.dumps(bidder.state)) == bidder.state
    assert bidder.state["p3/applied/bid-requests"] == {"offset": 17}


async def test_dropped_views_leave_the_stored_values_as_they_were() -> None:
    """Reads share the stored values (no copies), so nothing may change one in place: a test
    request is priced and charged in a view that is then dropped, and the store must not see it."""
    avo = campaign("avo", [AVOCADO], frequency_cap=FrequencyCap(impressions=5, window_s=3600))
    bidder = Bidder(CampaignBook(campaigns=[avo]))
    bidder.know("u1")
    assert (await bidder.one(request("u1"))).seatbid  # live: spend and caps are stored

    def booked() -> dict[str, Any]:
        return {k: v for k, v in bidder.state.items() if "/applied/" not in k}

    before = copy.deepcopy(booked())
    bidder.clock.advance(1)
    assert (await bidder.one(request("u1", test=1))).seatbid
    assert booked() == before


def test_a_charge_drops_the_campaign_s_bid_times_outside_its_cap_window() -> None:
    avo = campaign("avo", [AVOCADO], frequency_cap=FrequencyCap(impressions=5, window_s=60))
    t = ms(MIDDAY)
    store: dict[str, Any] = {"p0/freq/u1": {"avo": [t - 120_000, t - 30_000], "ban": [t - 120_000]}}
    ledger = Ledger(store, partitions=1)
    ledger.charge(avo, "u1", 0, MIDDAY, cost=10)
    assert store["p0/freq/u1"]["avo"] == [t - 120_000, t - 30_000]  # nothing stored before commit
    ledger.commit()
    # ban's window is not known to a charge of avo: the sweep (streams.housekeeping) drops those
    assert store["p0/freq/u1"] == {"avo": [t - 30_000, t], "ban": [t - 120_000]}
    assert store["p0/spend/avo"] == {"day": "2026-11-23", "micros": 10, "impressions": 1}


# --- deadlines and the model ----------------------------------------------------------------------


async def test_expired_tmax_is_a_no_bid_without_asking_the_model() -> None:
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO])]))
    bidder.know("u1")
    # produced 196 ms ago with tmax 200: 4 ms left, less than the 5 ms kept for the way back
    response = await bidder.one(request("u1", tmax=200), ts_ms=ms(MIDDAY) - 196)
    assert response.nbr == NoBidReason.INSUFFICIENT_AUCTION_TIME
    assert response.ext.reasons == ["tmax_expired_before_scoring"] and bidder.models.calls == []
    # 194 ms ago: 6 ms left, so it is scored
    assert (await bidder.one(request("u1", tmax=200), ts_ms=ms(MIDDAY) - 194)).seatbid


async def test_a_deadline_that_passes_while_scoring_gives_no_late_bid() -> None:
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO])]), ScriptedRecommender(takes_s=0.2))
    bidder.know("u1")
    start = bidder.clock.mono
    late, relaxed = await bidder.answer(
        bidder.record(request("u1", tmax=100), ts_ms=ms(MIDDAY) - 20),
        bidder.record(request("u1"), ts_ms=ms(MIDDAY)),
    )
    assert late.nbr == NoBidReason.INSUFFICIENT_AUCTION_TIME
    assert late.ext.reasons == ["tmax_expired_while_scoring"]
    assert relaxed.seatbid  # no tmax: the slow answer is still a bid
    # the model was told the batch's deadline: 100 ms after the Kafka timestamp, less 5 ms of
    # safety, on the monotonic clock (20 ms of it were gone on arrival)
    assert bidder.models.deadlines == [pytest.approx(start + 0.075)]
    assert len([k for k in bidder.state if "/resv/" in k]) == 1  # the late request reserved nothing


async def test_deadlines_run_on_the_monotonic_clock_not_the_wall_clock() -> None:
    """A wall-clock step between the batch's start and the model's answer (an NTP correction)
    neither expires a request nor gives it more time: only the monotonic clock counts."""
    models = ScriptedRecommender()
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO])]), models)
    bidder.know("u1")
    real_recommend = models.recommend

    async def wall_steps_back_an_hour(histories: Sequence[Sequence[int]], **kw: Any) -> Recommendations:
        bidder.clock.now -= timedelta(hours=1)
        return await real_recommend(histories, **kw)

    models.recommend = wall_steps_back_an_hour  # type: ignore[method-assign]
    models.takes_s = 0.05
    on_time = await bidder.one(request("u1", tmax=100), ts_ms=ms(MIDDAY))
    assert on_time.seatbid  # 50 of 95 ms used
    models.takes_s = 0.2
    late = await bidder.one(request("u1", tmax=100), ts_ms=ms(bidder.clock.now))
    assert late.ext.reasons == ["tmax_expired_while_scoring"]  # the step back gave it no extra time


async def test_an_unavailable_model_is_a_technical_no_bid() -> None:
    bidder = Bidder(CampaignBook(campaigns=[campaign("avo", [AVOCADO])]))
    bidder.know("u1")
    bidder.models.fail = RetryableInference("recommender", "UNAVAILABLE", "down")
    response = await bidder.one(request("u1"))
    assert response.nbr == NoBidReason.TECHNICAL_ERROR and response.ext.reasons == [
        "model_unavailable:UNAVAILABLE"
    ]


# --- the configured campaigns and the spec's requests ---------------------------------------------


def test_configured_campaigns_are_consistent() -> None:
    book = load_campaigns()
    assert len(book.active) >= 4 and any(not c.active for c in book.campaigns)
    for c in book.campaigns:
        assert set(c.segment_boost) <= set(RULES) and set(c.exclude_segments) <= set(RULES), c.id
        assert c.daily_budget > 0 and c.frequency_cap is not None, c.id
        assert all(cat.startswith("IAB") for cat in c.cat), c.id
    formats = {cr.format for c in book.active for cr in c.creatives}
    assert formats == {"banner", "video", "audio", "native"}


async def test_native_markup_answers_the_request_s_assets() -> None:
    body = read_json(DATA / "valid-native-site.json")
    bidder = Bidder(load_campaigns())
    bidder.know(body["user"]["id"])
    response = await bidder.one(body)
    bid = response.seatbid[0].bid[0]
    assert bid.mtype == MarkupType.NATIVE and bid.adm is not None
    native = orjson.loads(bid.adm)
    assert native["ver"] == "1.2" and native["link"]["url"].startswith("https://")
    assets = {a["id"]: a for a in native["assets"]}
    assert set(assets) == {123, 124, 126, 127, 128}
    assert len(assets[123]["title"]["text"]) <= 40 and len(assets[126]["data"]["value"]) <= 25
    assert assets[128]["img"]["w"] >= 836


@pytest.mark.parametrize("path", sorted(DATA.glob("valid-*.json")), ids=lambda p: p.stem)
async def test_every_valid_request_gets_exactly_one_explained_answer(path: Path) -> None:
    bidder = Bidder(load_campaigns())
    body = read_json(path)
    user = (body.get("user") or {}).get("id")
    if user:
        bidder.know(user, segments=["high_intent"])
    answers = await bidder.answer(bidder.record(body))
    assert len(answers) == 1 and answers[0].id == body["id"] and answers[0].ext.reasons
    for seatbid in answers[0].seatbid:
        for bid in seatbid.bid:
            imp = next(i for i in body["imp"] if i["id"] == bid.impid)
            assert bid.price >= imp.get("bidfloor", 0) and bid.adomain and bid.crid
