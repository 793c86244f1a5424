"""The worker's metrics (streams.metrics): what each acknowledged output counts as, records and
batches, Triton requests by gRPC code, consumer lag and campaign pacing, and the exported names."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from streams.campaigns import load_campaigns
from streams.dlq import RecordMeta, dead_letter
from streams.errors import BadInput, Reason, WorkerStalled
from streams.handlers.common import Outcome, Output
from streams.metrics import (
    BATCH_SIZE_BUCKETS,
    LATENCY_MS_BUCKETS,
    CampaignPace,
    MeteredModels,
    WorkerMetrics,
    campaign_paces,
    consumer_lag,
)
from streams.pacing import Ledger, Reservation, cost_micros
from streams.publisher import Publisher
from streams.schemas import BidResponse, BrandAlert, BrandWindow, CsReply, SegmentUpdate, Sentiment
from streams.schemas.bids import Bid, NoBidReason, ResponseExt, SeatBid
from streams.schemas.common import SourceRef
from streams.schemas.outputs import SentimentLabel
from streams.settings import Settings
from streams.text import TextTokenizer
from streams.topics import Topics
from tests.fakes import ConfigReads, recommender_answer

TOPICS = Topics(prefix="t-")
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SOURCE = SourceRef(topic="t-chat", partition=0, offset=1)


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def reply(action: str, intent: str, queue: str | None = None) -> Output:
    return Output.of(
        TOPICS.cs_replies,
        "c-u1",
        CsReply(
            reply_id="reply:t-chat/0/1",
            conversation_id="c-u1",
            in_reply_to="m1",
            user_id="u1",
            intent=intent,
            intent_confidence=0.9,
            sentiment=Sentiment(label=SentimentLabel.NEUTRAL, p_positive=0.5),
            action=action,  # type: ignore[arg-type]
            catalogue_reply_id="greeting_1" if action == "reply" else None,
            reply_text="Hello!" if action == "reply" else None,
            handoff_queue=queue,
            reasons=[],
            source=SOURCE,
            ts=T0,
        ),
    )


def bid_response(nbr: NoBidReason | None = None) -> Output:
    ext = ResponseExt(response_id="bid:t-bid-requests/0/1", reasons=[], source=SOURCE)
    if nbr is not None:
        return Output.of(TOPICS.ad_bids, "u1", BidResponse(id="r1", nbr=nbr, ext=ext))
    bid = Bid(id="r1:1", impid="1", price=2.0, adomain=["a.example"], crid="cr", cid="house-grocery")
    return Output.of(
        TOPICS.ad_bids, "u1", BidResponse(id="r1", seatbid=[SeatBid(bid=[bid], seat="s")], ext=ext)
    )


def segment_update(entered: list[str], exited: list[str]) -> Output:
    update = SegmentUpdate(
        update_id="segment:t-clickstream/0/1",
        user_id="u1",
        version=2,
        segments=entered,
        entered=entered,
        exited=exited,
        reasons=[],
        recommendations=[],
        source=SOURCE,
        ts=T0,
    )
    return Output.of(TOPICS.segment_updates, "u1", update)


def brand_outputs() -> list[Outcome]:
    window = BrandWindow(
        window_id="brand:b:1",
        brand="b",
        window_start=T0,
        window_end=T0,
        volume=5,
        mean_p_positive=0.2,
        share_negative=0.8,
        late_posts=0,
        reasons=[],
    )
    alert = BrandAlert(
        alert_id="alert:brand:b:1",
        brand="b",
        window_start=T0,
        window_end=T0,
        volume=5,
        share_negative=0.8,
        baseline_share_negative=0.1,
        reasons=[],
    )
    return [Output.of(TOPICS.brand_sentiment, "b", window), Output.of(TOPICS.brand_alerts, "b", alert)]


def dead(topic: str, reason: Reason) -> Outcome:
    meta = RecordMeta(topic=topic, partition=0, offset=3, key=b"k")
    return dead_letter(meta, b"x", BadInput(reason, "detail"), stage="decode", dlq_topic=TOPICS.dlq(topic))


def test_acknowledged_outputs_count_per_topic_and_by_what_they_say() -> None:
    metrics = WorkerMetrics(TOPICS)
    metrics.published(
        [
            reply("reply", "greeting"),
            reply("handoff", "complaint", "priority"),
            reply("handoff", "complaint", "priority"),
            bid_response(),
            bid_response(NoBidReason.UNMATCHED_USER),
            bid_response(NoBidReason.UNMATCHED_USER),
            bid_response(NoBidReason.INSUFFICIENT_AUCTION_TIME),
            segment_update(["cart_abandoner", "high_intent"], ["new_visitor"]),
            *brand_outputs(),
            dead(TOPICS.chat, Reason.NOT_JSON),
            dead(TOPICS.chat, Reason.NOT_JSON),
            dead(TOPICS.bid_requests, Reason.SCHEMA),
        ]
    )
    sent = "marketing_scorer_topic_messages_sent_total"
    assert value(metrics, sent, topic="t-cs-replies") == 3
    assert value(metrics, sent, topic="t-ad-bids") == 4
    assert value(metrics, sent, topic="t-chat.dlq") == 2
    assert (
        value(metrics, "marketing_scorer_cs_replies_total", action="reply", intent="greeting", queue="none")
        == 1
    )
    assert (
        value(
            metrics,
            "marketing_scorer_cs_replies_total",
            action="handoff",
            intent="complaint",
            queue="priority",
        )
        == 2
    )
    assert value(metrics, "marketing_scorer_bids_total") == 1
    assert value(metrics, "marketing_scorer_no_bids_total", nbr="8") == 2
    assert value(metrics, "marketing_scorer_no_bids_total", nbr="15") == 1
    assert value(metrics, "marketing_scorer_segment_entries_total", segment="cart_abandoner") == 1
    assert value(metrics, "marketing_scorer_segment_entries_total", segment="high_intent") == 1
    assert value(metrics, "marketing_scorer_segment_exits_total", segment="new_visitor") == 1
    assert value(metrics, "marketing_scorer_brand_windows_total") == 1
    assert value(metrics, "marketing_scorer_brand_alerts_total") == 1
    # dead letters by the input topic they came from, and their x-dlq-reason
    assert value(metrics, "marketing_scorer_dead_letters_total", topic="t-chat", reason="not_json") == 2
    assert (
        value(metrics, "marketing_scorer_dead_letters_total", topic="t-bid-requests", reason="schema_invalid")
        == 1
    )


class Acks:
    """A sink whose acks the test settles, once `expected` records were handed to it."""

    def __init__(self, expected: int) -> None:
        self.acks: list[asyncio.Future[None]] = []
        self.expected = expected
        self.all_sent = asyncio.Event()

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, headers: Any = None) -> Any:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        if len(self.acks) == self.expected:
            self.all_sent.set()
        return ack


async def test_the_publisher_counts_only_what_kafka_acknowledged() -> None:
    metrics = WorkerMetrics(TOPICS)
    sink = Acks(expected=2)
    publisher = Publisher({TOPICS.ad_bids: sink}, Counter(), metrics)
    publishing = asyncio.ensure_future(
        publisher.publish([bid_response(), bid_response(NoBidReason.BELOW_FLOOR)])
    )
    await asyncio.wait_for(sink.all_sent.wait(), 5)
    sink.acks[0].set_result(None)
    sink.acks[1].set_exception(RuntimeError("broker refused"))
    with pytest.raises(RuntimeError):
        await publishing
    assert value(metrics, "marketing_scorer_topic_messages_sent_total", topic="t-ad-bids") == 0
    assert value(metrics, "marketing_scorer_bids_total") == 0


def test_a_batch_counts_its_records_in_and_times_itself_in_ms() -> None:
    metrics = WorkerMetrics(TOPICS)
    done = metrics.batch("chat", "t-chat", 5)
    assert value(metrics, "marketing_scorer_messages_received_per_topic_total", topic="t-chat") == 5
    assert value(metrics, "marketing_scorer_batch_latency_ms_count", route="chat") == 0
    done()
    assert value(metrics, "marketing_scorer_batch_latency_ms_count", route="chat") == 1
    assert value(metrics, "marketing_scorer_batch_size_bucket", route="chat", le="4.0") == 0
    assert value(metrics, "marketing_scorer_batch_size_bucket", route="chat", le="8.0") == 1
    assert LATENCY_MS_BUCKETS[0] == 1 and LATENCY_MS_BUCKETS[-1] == 60_000  # ms, up to the retry budget
    assert BATCH_SIZE_BUCKETS[-1] == 64  # Settings.batch_size's maximum


def test_lag_is_end_minus_committed_else_minus_the_log_start() -> None:
    ends = {("chat", 0): 10, ("chat", 1): 7, ("chat", 2): 5, ("chat", 3): 4}
    committed: dict[tuple[str, int], int | None] = {("chat", 0): 4, ("chat", 1): 7, ("chat", 2): None}
    starts = {("chat", 2): 2}
    # chat[3]: no committed offset and no log start known: left out rather than guessed
    assert consumer_lag(ends, committed, starts) == {("chat", 0): 6, ("chat", 1): 0, ("chat", 2): 3}


def test_lag_series_are_replaced_so_partitions_given_away_disappear() -> None:
    metrics = WorkerMetrics(TOPICS, group="t-marketing-scorer")
    metrics.set_lag({("t-chat", 0): 6, ("t-chat", 1): 0})
    metrics.set_lag({("t-chat", 1): 2})
    labels = {"consumergroup": "t-marketing-scorer", "topic": "t-chat"}
    assert metrics.registry.get_sample_value("kafka_consumergroup_lag", {**labels, "partition": "0"}) is None
    assert value(metrics, "kafka_consumergroup_lag", **labels, partition="1") == 2


def test_campaign_spend_budget_and_pacing_over_the_partitions_owned() -> None:
    book = load_campaigns()
    campaign = book.campaigns[0]
    state: dict[str, Any] = {}
    ledger = Ledger(state, partitions=4)
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # half the day gone
    for partition, price in ((0, 2.0), (1, 3.0), (1, 1.5)):
        ledger.charge(campaign, "u1", partition, now, cost_micros(price))
    for partition, bid_id, price in ((0, "r0:1", 4.0), (2, "r2:1", 2.5)):  # bids awaiting notices
        held = Reservation(
            bid_id,
            "1",
            campaign.id,
            "u2",
            cost_micros(price),
            price,
            price,
            1.0,
            2,
            int(now.timestamp() * 1000),
        )
        ledger.reserve(campaign, partition, now, held)
    ledger.commit()
    share = round(campaign.daily_budget * 1_000_000) // 4
    paces = {p.campaign: p for p in campaign_paces(Ledger(state, partitions=4), book, [1, 2], now)}
    assert set(paces) == {c.id for c in book.campaigns}
    mine = paces[campaign.id]
    assert mine.spent == pytest.approx(
        (3.0 + 1.5) / 1000
    )  # CPM prices: a thousandth each; partition 0 is not ours
    assert mine.reserved == pytest.approx(2.5 / 1000)  # partition 0's reservation is not ours
    assert mine.budget == pytest.approx(2 * share / 1_000_000)
    expected_line = (
        min(share, int(share * (0.5 + campaign.pacing.burst))) if campaign.pacing.mode == "even" else share
    )
    assert mine.allowed == pytest.approx(2 * expected_line / 1_000_000)

    metrics = WorkerMetrics(TOPICS)
    metrics.set_campaigns([CampaignPace("house-grocery", 1.25, 50.0, 26.0, reserved=0.75)])
    assert value(metrics, "marketing_scorer_campaign_spend", campaign="house-grocery") == 1.25
    assert value(metrics, "marketing_scorer_campaign_reserved", campaign="house-grocery") == 0.75
    assert value(metrics, "marketing_scorer_campaign_daily_budget", campaign="house-grocery") == 50.0
    assert value(metrics, "marketing_scorer_campaign_pacing_allowed", campaign="house-grocery") == 26.0


class UnavailableOnce(ConfigReads):
    """A gRPC client stand-in: the first request finds Triton unavailable, the second is answered."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def infer(self, model: str, inputs: list[Any], **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE")
        return recommender_answer(inputs[0].shape()[0])


def test_every_triton_request_is_timed_and_counted_by_grpc_code() -> None:
    metrics = WorkerMetrics(TOPICS)
    models = MeteredModels(
        Settings(triton_timeout_s=0.5, triton_retry_max_s=5), cast(TextTokenizer, None), metrics
    )
    models._client = cast(InferenceServerClient, UnavailableOnce())
    asyncio.run(models.recommend([[1, 2, 3]]))
    requests = "marketing_scorer_triton_requests_total"
    assert value(metrics, requests, model="recommender", code="UNAVAILABLE") == 1
    assert value(metrics, requests, model="recommender", code="OK") == 1
    assert value(metrics, "marketing_scorer_triton_request_latency_ms_count", model="recommender") == 2
    assert models.calls == 2  # the client's own count is kept


def test_liveness_and_the_worker_stopping_itself() -> None:
    metrics = WorkerMetrics(TOPICS)
    metrics.liveness_checked("ok")
    metrics.liveness_checked("no_offsets")
    metrics.stopping(WorkerStalled("chat[0]: 3 records waiting"))
    metrics.stopping(RuntimeError("Kafka refused"))
    assert value(metrics, "marketing_scorer_liveness_checks_total", result="ok") == 1
    assert value(metrics, "marketing_scorer_liveness_checks_total", result="no_offsets") == 1
    assert value(metrics, "marketing_scorer_liveness_last_check_timestamp_seconds") > 0
    assert value(metrics, "marketing_scorer_worker_stops_total", reason="stalled") == 1
    assert value(metrics, "marketing_scorer_worker_stops_total", reason="batch_failed") == 1


def test_the_exposition_has_prefixed_names_ms_histograms_and_no_created_series() -> None:
    metrics = WorkerMetrics(TOPICS, group="g")
    metrics.track(lambda: True, lambda: 3)
    metrics.published([reply("reply", "greeting"), bid_response(NoBidReason.UNMATCHED_USER)])
    metrics.batch("chat", "t-chat", 1)()
    metrics.triton_request("text_encoder", "OK", 0.01)
    metrics.set_lag({("t-chat", 0): 1})
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    ours = {n for n in families if not n.startswith(("process_", "python_"))}
    assert ours and all(n.startswith("marketing_scorer_") or n == "kafka_consumergroup_lag" for n in ours)
    assert not [n for n in families if n.endswith("_created")]
    histograms = {n for n, f in families.items() if f.type == "histogram"}
    assert histograms == {
        "marketing_scorer_batch_size",
        "marketing_scorer_batch_latency_ms",
        "marketing_scorer_triton_request_latency_ms",
    }
    assert families["marketing_scorer_ready"].samples[0].value == 1
    assert families["marketing_scorer_total_rebalances"].samples[0].value == 3
    assert "process_start_time_seconds" in families  # restarts show as changes of it
