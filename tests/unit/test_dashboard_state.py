"""The dashboard's aggregation, fed records by hand; every expected figure is worked out here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from dashboard.campaigns import pacing_allowed_micros
from dashboard.state import BUCKET_MS, BUCKETS, Dashboard, lag_from, percentile
from streams.campaigns import Campaign
from streams.schemas import BidResponse, BrandAlert, BrandWindow, CsReply, SegmentUpdate
from streams.schemas.adevents import AdOutcome, OutcomeKind
from streams.schemas.bids import Bid, NoBidReason, ResponseExt, SeatBid
from streams.schemas.common import SourceRef
from streams.schemas.outputs import Sentiment, SentimentLabel

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # a quarter of the UTC day gone
NOW_MS = int(NOW.timestamp() * 1000)


def src(topic: str, offset: int, partition: int = 0) -> SourceRef:
    return SourceRef(topic=topic, partition=partition, offset=offset)


def segment(
    user: str, version: int, segments: list[str], entered: list[str], exited: list[str]
) -> SegmentUpdate:
    return SegmentUpdate(
        update_id=f"segment:clickstream/0/{user}-{version}",
        user_id=user,
        version=version,
        segments=segments,
        entered=entered,
        exited=exited,
        reasons=[],
        recommendations=[],
        source=src("clickstream", version),
        ts=NOW,
    )


def reply(offset: int, action: str = "reply", intent: str = "refund", queue: str | None = None) -> CsReply:
    return CsReply(
        reply_id=f"reply:chat/0/{offset}",
        conversation_id="c-u1",
        in_reply_to=f"m{offset}",
        user_id="u-secret-7",
        intent=intent,
        intent_confidence=0.9,
        sentiment=Sentiment(label=SentimentLabel.NEGATIVE, p_positive=0.2),
        action=action,  # type: ignore[arg-type]
        handoff_queue=queue,
        reasons=[],
        source=src("chat", offset),
        ts=NOW,
    )


def bid(offset: int, price: float, campaign: str = "camp") -> BidResponse:
    return BidResponse(
        id=f"r{offset}",
        seatbid=[
            SeatBid(bid=[Bid(id="b", impid="1", price=price, adomain=["x.example"], crid="c", cid=campaign)])
        ],
        ext=ResponseExt(
            response_id=f"bid:bid-requests/0/{offset}", reasons=[], source=src("bid-requests", offset)
        ),
    )


def no_bid(offset: int, nbr: NoBidReason) -> BidResponse:
    return BidResponse(
        id=f"r{offset}",
        nbr=nbr,
        ext=ResponseExt(
            response_id=f"bid:bid-requests/0/{offset}", reasons=[], source=src("bid-requests", offset)
        ),
    )


def outcome(
    kind: OutcomeKind, bid_id: str, at: datetime, charged: int = 0, released: int = 0, campaign: str = "camp"
) -> AdOutcome:
    return AdOutcome(
        outcome_id=f"{kind.value}:{bid_id}",
        kind=kind,
        bid_id=bid_id,
        campaign=campaign,
        user="u-secret-9",
        auction_type=2,
        bid_price=3.0,
        clearing_price=charged * 1000 / 1_000_000 if kind is OutcomeKind.BILLED else None,
        charged_micros=charged,
        released_micros=released,
        bid_at=at - timedelta(seconds=2),
        at=at,
    )


def campaign(
    budget: float = 400.0, mode: str = "even", burst: float = 0.05, shape: list[float] | None = None
) -> Campaign:
    return Campaign.model_validate(
        {
            "id": "camp",
            "adomain": ["x.example"],
            "value_per_conversion": 0.01,
            "max_cpm": 3.2,
            "daily_budget": budget,
            "pacing": {"mode": mode, "burst": burst, "shape": shape},
            "creatives": [{"crid": "c", "format": "banner", "w": 300, "h": 250}],
        }
    )


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile(list(range(1, 11)), 50) == 5  # ceil(0.5 * 10) = 5th
    assert percentile(list(range(1, 11)), 99) == 10  # ceil(9.9) = 10th
    assert percentile([50, 15, 40, 20, 35], 50) == 35  # sorted 15 20 35 40 50, ceil(2.5) = 3rd
    assert percentile([50, 15, 40, 20, 35], 99) == 50
    assert percentile([7], 99) == 7


def test_a_redelivered_output_is_dropped_by_its_id() -> None:
    state = Dashboard()
    assert state.cs_reply(reply(1), NOW_MS)
    assert not state.cs_reply(reply(1), NOW_MS + 5)  # the same answer again, after a worker crash
    assert state.cs_reply(reply(2, "handoff", "human_agent", "general"), NOW_MS)
    cs = state.snapshot(NOW)["cs"]
    assert (cs["replies"], cs["handoffs"]) == (1, 1)
    assert cs["queues"] == [{"queue": "general", "count": 1}]
    assert cs["intents"] == [{"intent": "human_agent", "count": 1}, {"intent": "refund", "count": 1}]
    assert state.snapshot(NOW)["health"]["dropped"]["duplicates"] == 1


def test_stale_segment_versions_are_dropped_and_populations_follow_the_latest() -> None:
    state = Dashboard()
    assert state.segment_update(segment("u1", 1, ["new_visitor"], ["new_visitor"], []), NOW_MS)
    assert state.segment_update(segment("u1", 3, ["high_intent"], ["high_intent"], ["new_visitor"]), NOW_MS)
    assert not state.segment_update(segment("u1", 2, ["cart_abandoner"], ["cart_abandoner"], []), NOW_MS)
    assert state.segment_update(segment("u2", 1, ["high_intent"], ["high_intent"], []), NOW_MS)
    snap = state.snapshot(NOW)
    rows = {r["segment"]: (r["population"], r["entered"], r["exited"]) for r in snap["segments"]["rows"]}
    # u1 ends in high_intent (v3), u2 too; new_visitor was entered once and left once; v2 never counted
    assert rows == {"high_intent": (2, 2, 0), "new_visitor": (0, 1, 1)}
    assert snap["segments"]["users"] == 2
    assert [(c["version"], c["entered"], c["exited"]) for c in snap["segments"]["recent"]] == [
        (1, ["high_intent"], []),
        (3, ["high_intent"], ["new_visitor"]),
        (1, ["new_visitor"], []),
    ]
    assert snap["health"]["dropped"]["stale_segment_versions"] == 1


def test_dead_letters_are_counted_by_reason_and_redeliveries_once() -> None:
    state = Dashboard()
    state.dead_letter("t-chat.dlq", "not_json", ("t-chat", 0, 1))
    state.dead_letter("t-chat.dlq", "not_json", ("t-chat", 0, 2))
    state.dead_letter("t-social.dlq", "oversized", ("t-social", 1, 5))
    assert not state.dead_letter("t-chat.dlq", "not_json", ("t-chat", 0, 1))
    state.dead_letter("t-chat.dlq", "schema_invalid", None)  # no source headers: counted, not deduped
    dlq = state.snapshot(NOW, prefix="t-")["health"]["dead_letters"]
    assert dlq["total"] == 4
    assert dlq["by_reason"] == [
        {"reason": "not_json", "count": 2},
        {"reason": "oversized", "count": 1},
        {"reason": "schema_invalid", "count": 1},
    ]
    assert dlq["rows"] == [
        {"topic": "chat.dlq", "reason": "not_json", "count": 2},
        {"topic": "chat.dlq", "reason": "schema_invalid", "count": 1},
        {"topic": "social.dlq", "reason": "oversized", "count": 1},
    ]


def test_bids_are_counted_and_valued_at_bid_prices_not_as_spend() -> None:
    state = Dashboard(campaigns=[campaign(budget=400.0, burst=0.05)])
    state.bid_response(bid(1, 2.5), NOW_MS - 60_000)  # 2.5 CPM: 2,500 micros
    state.bid_response(bid(2, 3.2), NOW_MS - 1_000)  # 3,200 micros
    state.bid_response(bid(3, 3.0), NOW_MS - 7 * 3_600_000)  # yesterday 23:00 UTC: not today's
    state.bid_response(no_bid(4, NoBidReason.INSUFFICIENT_AUCTION_TIME), NOW_MS)
    state.bid_response(no_bid(5, NoBidReason.INSUFFICIENT_AUCTION_TIME), NOW_MS)
    state.bid_response(no_bid(6, NoBidReason.UNMATCHED_USER), NOW_MS)
    camp = state.snapshot(NOW)["campaigns"]
    assert (camp["bids"], camp["no_bids"]) == (3, 3)
    assert camp["no_bid_reasons"] == [
        {"nbr": 15, "name": "insufficient_auction_time", "count": 2},
        {"nbr": 8, "name": "unmatched_user", "count": 1},
    ]
    [row] = camp["rows"]
    assert (row["campaign"], row["bids_today"], row["bid_value_today"]) == ("camp", 2, 0.0057)
    # nothing billed: no spend, whatever was bid
    assert (row["spent_today"], row["pace"]) == (0.0, 0.0)
    assert row["outcomes_today"] == {"won": 0, "billed": 0, "lost": 0, "expired": 0}
    # 06:00 UTC: 0.25 of the day + 0.05 burst = 0.30 of 400 = 120 allowed by now
    assert (row["pacing_allowed"], row["daily_budget"], row["pacing_mode"]) == (120.0, 400.0, "even")


def test_spend_today_is_what_billed_outcomes_booked_once_each() -> None:
    state = Dashboard(campaigns=[campaign(budget=400.0, burst=0.05)])
    state.bid_response(bid(1, 2.5), NOW_MS - 60_000)
    assert state.ad_outcome(outcome(OutcomeKind.WON, "b1", NOW - timedelta(seconds=50)), NOW_MS)
    assert state.ad_outcome(
        outcome(OutcomeKind.BILLED, "b1", NOW - timedelta(seconds=40), 1_800, 2_500), NOW_MS
    )
    assert state.ad_outcome(
        outcome(OutcomeKind.BILLED, "b2", NOW - timedelta(seconds=5), 2_700, 3_000), NOW_MS
    )
    # the worker replayed b2's billing notice: the same outcome id again, booked once
    again = outcome(OutcomeKind.BILLED, "b2", NOW - timedelta(seconds=5), 2_700, 3_000)
    assert not state.ad_outcome(again, NOW_MS + 10)
    assert state.ad_outcome(
        outcome(OutcomeKind.LOST, "b4", NOW - timedelta(seconds=3), released=3_000), NOW_MS
    )
    assert state.ad_outcome(
        outcome(OutcomeKind.EXPIRED, "b5", NOW - timedelta(seconds=1), released=900), NOW_MS
    )
    # billed yesterday at 23:00 UTC: yesterday's spend, not today's
    yesterday = outcome(OutcomeKind.BILLED, "b3", NOW - timedelta(hours=7), 2_900, 3_000)
    assert state.ad_outcome(yesterday, NOW_MS)
    snap = state.snapshot(NOW)
    [row] = snap["campaigns"]["rows"]
    assert row["spent_today"] == 0.0045  # 1,800 + 2,700 micros
    assert row["pace"] == 4_500 / 120_000_000
    assert row["outcomes_today"] == {"won": 1, "billed": 2, "lost": 1, "expired": 1}
    assert (row["bids_today"], row["bid_value_today"]) == (1, 0.0025)
    assert snap["health"]["dropped"]["duplicates"] == 1
    # the next day starts from nothing booked
    [tomorrow] = state.snapshot(NOW + timedelta(days=1))["campaigns"]["rows"]
    assert (tomorrow["spent_today"], tomorrow["outcomes_today"]["billed"]) == (0.0, 0)


def test_an_outcome_for_an_unconfigured_campaign_has_a_row_without_a_line() -> None:
    state = Dashboard(campaigns=[campaign()])
    state.ad_outcome(outcome(OutcomeKind.BILLED, "b1", NOW, 1_000, 1_000, campaign="retired"), NOW_MS)
    rows = {r["campaign"]: r for r in state.snapshot(NOW)["campaigns"]["rows"]}
    assert sorted(rows) == ["camp", "retired"]
    assert (rows["retired"]["spent_today"], rows["retired"]["pacing_allowed"], rows["retired"]["pace"]) == (
        0.001,
        None,
        None,
    )
    assert rows["camp"]["spent_today"] == 0.0


def test_pacing_line_asap_and_capped_at_the_budget() -> None:
    assert pacing_allowed_micros(campaign(budget=10.0, mode="asap"), NOW) == 10_000_000
    late = NOW.replace(hour=23, minute=30)  # 0.979 of the day + 0.05 > 1: the whole budget
    assert pacing_allowed_micros(campaign(budget=10.0, burst=0.05), late) == 10_000_000
    assert pacing_allowed_micros(campaign(budget=10.0, burst=0.0), NOW.replace(hour=12)) == 5_000_000


def test_pacing_line_follows_the_campaigns_hour_of_day_shape() -> None:
    # weight 3 for hours 0-5, 1 for hours 6-23: 36 in all, 18 of it gone by 06:00 (an even
    # line would say 0.25 of the day)
    shaped = campaign(budget=400.0, mode="shape", burst=0.0, shape=[3.0] * 6 + [1.0] * 18)
    assert pacing_allowed_micros(shaped, NOW) == 200_000_000  # 18 / 36 of 400
    assert pacing_allowed_micros(shaped, NOW.replace(minute=30)) == 205_555_555  # 18.5 / 36, floored
    state = Dashboard(campaigns=[shaped])
    state.ad_outcome(outcome(OutcomeKind.BILLED, "b1", NOW, 50_000_000, 50_000_000), NOW_MS)
    [row] = state.snapshot(NOW)["campaigns"]["rows"]
    assert (row["pacing_allowed"], row["pace"], row["pacing_mode"]) == (200.0, 0.25, "shape")


def test_latency_joins_each_output_to_its_input_timestamp_either_order() -> None:
    state = Dashboard()
    state.input_record("chat", 0, 7, 1_000)
    state.cs_reply(reply(7), 1_120)  # 120 ms after its input
    state.cs_reply(reply(8), 2_300)  # read before its input ...
    state.input_record("chat", 0, 8, 2_000)  # ... which was produced 300 ms earlier
    state.input_record("bid-requests", 0, 9, 3_000)
    state.bid_response(no_bid(9, NoBidReason.UNMATCHED_USER), 3_040)
    health = state.snapshot(NOW)["health"]
    latency = {r["path"]: (r["samples"], r["p50_ms"], r["p99_ms"]) for r in health["latency"]}
    assert latency["chat → cs-replies"] == (2, 120, 300)
    assert latency["bid-requests → ad-bids"] == (1, 40, 40)
    assert latency["clickstream/social → segment-updates"] == (0, None, None)
    # one 5-second bucket: 3 inputs and 3 outputs = 0.6/s each; latencies 40, 120, 300
    assert health["throughput"] == [
        {"t": 0, "inputs_per_s": 0.6, "outputs_per_s": 0.6, "p50_ms": 120, "p99_ms": 300}
    ]


def test_throughput_keeps_the_last_buckets_only() -> None:
    state = Dashboard()
    state.input_record("chat", 0, 1, 1_000)
    state.input_record("chat", 0, 2, BUCKETS * BUCKET_MS + 1_000)  # pushes bucket 0 out of the history
    state.input_record("chat", 0, 3, 2_000)  # late, for a bucket no longer kept: counted nowhere
    series = state.snapshot(NOW)["health"]["throughput"]
    assert [(p["t"], p["inputs_per_s"]) for p in series] == [(BUCKETS * BUCKET_MS, 0.2)]


def test_lag_is_end_minus_committed_or_log_start() -> None:
    ends = {("t-chat", 0): 10, ("t-chat", 1): 5, ("t-social", 0): 7}
    starts = {("t-chat", 0): 0, ("t-chat", 1): 2, ("t-social", 0): 0}
    committed = {("t-chat", 0): 4, ("t-chat", 1): -1}  # chat[1] never committed; social unknown
    lag = lag_from(ends, starts, committed)
    assert lag == {("t-chat", 0): 6, ("t-chat", 1): 3, ("t-social", 0): 7}
    state = Dashboard()
    assert state.snapshot(NOW)["health"]["lag"]["total"] is None  # not measured yet
    state.set_lag(lag, NOW_MS)
    assert state.snapshot(NOW, prefix="t-")["health"]["lag"] == {
        "total": 16,
        "topics": [{"topic": "chat", "lag": 9}, {"topic": "social", "lag": 7}],
        "at": NOW_MS,
    }


def test_brand_windows_and_alert_markers() -> None:
    state = Dashboard()
    start = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)

    def window(brand: str, i: int, share: float) -> BrandWindow:
        ws = start + timedelta(minutes=i)
        return BrandWindow(
            window_id=f"brand:{brand}:{int(ws.timestamp())}",
            brand=brand,
            window_start=ws,
            window_end=ws + timedelta(minutes=1),
            volume=6,
            mean_p_positive=1 - share,
            share_negative=share,
            late_posts=0,
            reasons=[],
        )

    for i, share in enumerate([1 / 6, 1 / 6, 1.0]):
        state.brand_window(window("acme", i, share), NOW_MS)
    assert not state.brand_window(window("acme", 2, 1.0), NOW_MS)  # redelivered window
    state.brand_window(window("zeta", 0, 0.5), NOW_MS)
    spike = start + timedelta(minutes=2)
    alert = BrandAlert(
        alert_id=f"alert:acme:{int(spike.timestamp())}",
        brand="acme",
        window_start=spike,
        window_end=spike + timedelta(minutes=1),
        volume=6,
        share_negative=1.0,
        baseline_share_negative=1 / 6,
        reasons=["spike:1.00>=0.40"],
    )
    state.brand_alert(alert, NOW_MS)
    assert not state.brand_alert(alert, NOW_MS)
    brands = state.snapshot(NOW)["brands"]
    assert [(s["brand"], s["alerts"], len(s["points"])) for s in brands["series"]] == [
        ("acme", 1, 3),
        ("zeta", 0, 1),
    ]
    assert [p["share_negative"] for p in brands["series"][0]["points"]] == [1 / 6, 1 / 6, 1.0]
    assert brands["alert_count"] == 1
    [marker] = brands["alerts"]
    assert (marker["brand"], marker["window_start"]) == ("acme", int(spike.timestamp() * 1000))


def test_the_snapshot_names_no_user() -> None:
    state = Dashboard()
    state.cs_reply(reply(1), NOW_MS)  # user u-secret-7
    state.segment_update(segment("u-secret-8", 1, ["churn_risk"], ["churn_risk"], []), NOW_MS)
    state.ad_outcome(outcome(OutcomeKind.BILLED, "b1", NOW, 1_000, 1_000), NOW_MS)  # user u-secret-9
    blob = orjson.dumps(state.snapshot(NOW))
    assert b"u-secret" not in blob and b"c-u1" not in blob
