"""Every metric the worker exports, defined in one place, on a registry of its own per app (not
prometheus_client's global one, so that tests can build several apps in one process).

Names follow what people already alert on:
- Faust's own sensor names (`faust/sensors/prometheus.py`) where they fit, with our prefix as
  Faust puts the app's: `marketing_scorer_messages_received_per_topic_total{topic}`,
  `marketing_scorer_topic_messages_sent_total{topic}`, `marketing_scorer_total_rebalances`;
- kafka-exporter's `kafka_consumergroup_lag{consumergroup,topic,partition}`: end offset minus
  the group's committed offset (minus the log start where it never committed);
- prometheus_client's process metrics (`process_start_time_seconds` tells restarts apart).

Histograms have explicit millisecond buckets, and every label set is small and fixed: route,
topic, model, code, reason, nbr, campaign, segment, intent, queue, action.

The handlers know nothing of Kafka or of metrics: they return Outcomes. The publisher hands the
Outcomes Kafka has acknowledged to `WorkerMetrics.published`, which counts them per topic and
reads what the business metrics need (bid or nbr, a reply's action, intent and queue, segment
entries and exits, brand windows and alerts, a dead letter's reason) from the outputs
themselves, here and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from tritonclient.grpc import InferInput, InferRequestedOutput, InferResult
from tritonclient.utils import InferenceServerException

from streams.campaigns import CampaignBook
from streams.dlq import HEADER_REASON, DeadLetter
from streams.errors import WorkerStalled
from streams.handlers.common import Outcome
from streams.inference import TritonModels, classify
from streams.pacing import MICROS, Ledger
from streams.settings import Settings
from streams.text import TextTokenizer
from streams.topics import DLQ_SUFFIX, Topics

PREFIX = "marketing_scorer"
# Milliseconds: a batch of bids takes a few, a chat batch on CPU a few hundred, and a batch
# retrying an unavailable Triton up to the retry budget (60 s).
LATENCY_MS_BUCKETS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # batch_size is at most 64
NO_QUEUE = "none"  # the queue label of a reply that was not handed off

Partition = tuple[str, int]


@dataclass(frozen=True)
class CampaignPace:
    """A campaign's day so far on the partitions one worker owns, in the book's currency."""

    campaign: str
    spent: float  # booked on billing notices today
    budget: float  # these partitions' shares of the daily budget
    allowed: float  # what the pacing line allows by now
    reserved: float = 0.0  # held by bids still waiting for their billing or loss notice


def campaign_paces(
    ledger: Ledger, book: CampaignBook, partitions: Collection[int], now: datetime
) -> list[CampaignPace]:
    """Spend, budget and pacing line of every campaign over `partitions` (streams.pacing keeps
    each input partition's spend and share of the budget apart)."""
    return [
        CampaignPace(
            campaign.id,
            sum(ledger.spent_micros(campaign, p, now) for p in partitions) / MICROS,
            ledger.share_micros(campaign) * len(partitions) / MICROS,
            ledger.allowed_micros(campaign, now) * len(partitions) / MICROS,
            sum(ledger.held_micros(campaign, p, now) for p in partitions) / MICROS,
        )
        for campaign in book.campaigns
    ]


def consumer_lag(
    ends: Mapping[Partition, int],
    committed: Mapping[Partition, int | None],
    log_starts: Mapping[Partition, int],
) -> dict[Partition, int]:
    """Records each partition's group has not committed: its end offset minus the committed
    offset, or minus the log start where the group never committed (kafka-exporter counts the
    same way). A partition whose offsets were not all found is left out."""
    lag = {}
    for partition, end in ends.items():
        done = committed.get(partition)
        done = log_starts.get(partition) if done is None else done
        if done is not None:
            lag[partition] = max(end - done, 0)
    return lag


class WorkerMetrics:
    """The worker's metrics. `topics` says which output topic holds what (ad-bids: BidResponses,
    ...); `group` is the consumer group, for the lag's `consumergroup` label."""

    def __init__(self, topics: Topics | None = None, group: str = "") -> None:
        disable_created_metrics()  # a `_created` series beside every counter: twice the series, unused
        topics = topics or Topics()
        self.group = group
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", doc, labels, registry=registry, buckets=buckets)

        # --- records, batches, Triton ----------------------------------------------------------
        self.received = counter(
            "messages_received_per_topic", "Records taken by an agent, per input topic", ["topic"]
        )
        self.sent = counter(
            "topic_messages_sent",
            "Records Kafka acknowledged, per output, internal and dead-letter topic",
            ["topic"],
        )
        self.batch_size = histogram(
            "batch_size", "Records per batch an agent took", ["route"], BATCH_SIZE_BUCKETS
        )
        self.batch_latency = histogram(
            "batch_latency_ms",
            "From an agent taking a batch to Kafka acknowledging all its outputs, in ms",
            ["route"],
            LATENCY_MS_BUCKETS,
        )
        self.triton_latency = histogram(
            "triton_request_latency_ms",
            "One Triton inference request (each retry is one), in ms",
            ["model"],
            LATENCY_MS_BUCKETS,
        )
        self.triton_requests = counter(
            "triton_requests",
            "Triton inference requests by gRPC status code (OK, UNAVAILABLE, DEADLINE_EXCEEDED, ...)",
            ["model", "code"],
        )
        self.dead_letters = counter(
            "dead_letters", "Dead letters by input topic and x-dlq-reason", ["topic", "reason"]
        )
        # --- decisions -------------------------------------------------------------------------
        self.bids = counter("bids", "BidResponses with a bid")
        self.no_bids = counter("no_bids", "BidResponses without a bid, by OpenRTB no-bid reason", ["nbr"])
        self.campaign_spend = gauge(
            "campaign_spend",
            "Spend booked today (billing notices, at the clearing price) on the bid partitions this "
            "worker owns, in the currency",
            ["campaign"],
        )
        self.campaign_reserved = gauge(
            "campaign_reserved",
            "Held by bids still waiting for their billing or loss notice, on those partitions; it "
            "counts against the budget and the pacing line like spend",
            ["campaign"],
        )
        self.campaign_budget = gauge(
            "campaign_daily_budget",
            "The shares of the daily budget of the bid partitions this worker owns",
            ["campaign"],
        )
        self.campaign_allowed = gauge(
            "campaign_pacing_allowed",
            "What the pacing line allows to have been spent by now on those partitions",
            ["campaign"],
        )
        self.notices = counter(
            "ad_notices",
            "Notices read from ad-events, by kind (win, billing, loss) and result: won, billed, lost, "
            "duplicate, replayed, late_win, audit (never charged), dead_letter",
            ["kind", "result"],
        )
        self.ad_outcomes = counter(
            "ad_outcomes", "Bookings on ad-outcomes: won, billed, lost, expired", ["kind"]
        )
        self.segment_entries = counter("segment_entries", "Users entering a segment", ["segment"])
        self.segment_exits = counter("segment_exits", "Users leaving a segment", ["segment"])
        self.cs_replies = counter(
            "cs_replies",
            "Customer-service answers: action reply or handoff, the intent, the hand-off queue",
            ["action", "intent", "queue"],
        )
        self.brand_windows = counter("brand_windows", "Brand sentiment windows closed")
        self.brand_alerts = counter("brand_alerts", "Brand alerts raised")
        # --- Kafka, liveness, readiness --------------------------------------------------------
        self.lag = Gauge(
            "kafka_consumergroup_lag",
            "End offset minus the group's committed offset, per input partition this worker owns",
            ["consumergroup", "topic", "partition"],
            registry=registry,
        )
        self.rebalances = gauge("total_rebalances", "Rebalances since the worker started")
        self.liveness_checks = counter(
            "liveness_checks",
            "Runs of the liveness check: ok, no_offsets (broker silent), stalled",
            ["result"],
        )
        self.liveness_checked_at = gauge(
            "liveness_last_check_timestamp_seconds", "When the liveness check last ran"
        )
        self.stops = counter(
            "worker_stops",
            "The worker stopping itself to be restarted: stalled (liveness), batch_failed",
            ["reason"],
        )
        self.ready = gauge(
            "ready", "1 when /ready answers 200: assigned after a completed rebalance, models ready"
        )
        self._readers: dict[str, Callable[[Any], None]] = {
            topics.ad_bids: self._bid_response,
            topics.cs_replies: self._cs_reply,
            topics.segment_updates: self._segment_update,
            topics.brand_sentiment: lambda _: self.brand_windows.inc(),
            topics.brand_alerts: lambda _: self.brand_alerts.inc(),
            topics.ad_outcomes: lambda body: self.ad_outcomes.labels(body["kind"]).inc(),
        }

    # --- what the agents and the publisher report ----------------------------------------------

    def batch(self, route: str, topic: str, size: int) -> Callable[[], None]:
        """A batch was taken; call the result once its outputs are acknowledged."""
        self.received.labels(topic).inc(size)
        self.batch_size.labels(route).observe(size)
        started = time.monotonic()
        return lambda: self.batch_latency.labels(route).observe((time.monotonic() - started) * 1000)

    def published(self, outcomes: Iterable[Outcome]) -> None:
        """Count outcomes Kafka has acknowledged."""
        for outcome in outcomes:
            self.sent.labels(outcome.topic).inc()
            if isinstance(outcome, DeadLetter):
                reason = next(v for k, v in outcome.headers if k == HEADER_REASON)  # x-dlq-*: ours alone
                self.dead_letters.labels(outcome.topic.removesuffix(DLQ_SUFFIX), reason.decode()).inc()
            elif (read := self._readers.get(outcome.topic)) is not None:
                read(orjson.loads(outcome.value))

    def _bid_response(self, body: Any) -> None:
        if body.get("seatbid"):
            self.bids.inc()
        else:
            self.no_bids.labels(str(body["nbr"])).inc()

    def _cs_reply(self, body: Any) -> None:
        self.cs_replies.labels(body["action"], body["intent"], body.get("handoff_queue", NO_QUEUE)).inc()

    def _segment_update(self, body: Any) -> None:
        for segment in body["entered"]:
            self.segment_entries.labels(segment).inc()
        for segment in body["exited"]:
            self.segment_exits.labels(segment).inc()

    def notice(self, kind: str, result: str) -> None:
        """What the notice handler made of one notice (`streams.handlers.notices`)."""
        self.notices.labels(kind, result).inc()

    def triton_request(self, model: str, code: str, seconds: float) -> None:
        self.triton_requests.labels(model, code).inc()
        self.triton_latency.labels(model).observe(seconds * 1000)

    def set_lag(self, lag: Mapping[Partition, int]) -> None:
        """Replace every lag series: partitions this worker no longer owns disappear."""
        self.lag.clear()
        for (topic, partition), value in lag.items():
            self.lag.labels(self.group, topic, str(partition)).set(value)

    def set_campaigns(self, paces: Iterable[CampaignPace]) -> None:
        for pace in paces:
            self.campaign_spend.labels(pace.campaign).set(pace.spent)
            self.campaign_reserved.labels(pace.campaign).set(pace.reserved)
            self.campaign_budget.labels(pace.campaign).set(pace.budget)
            self.campaign_allowed.labels(pace.campaign).set(pace.allowed)

    def liveness_checked(self, result: str) -> None:
        self.liveness_checks.labels(result).inc()
        self.liveness_checked_at.set_to_current_time()

    def stopping(self, why: BaseException) -> None:
        self.stops.labels("stalled" if isinstance(why, WorkerStalled) else "batch_failed").inc()

    def track(self, ready: Callable[[], bool], rebalances: Callable[[], int]) -> None:
        """Gauges read at each scrape: readiness, and Faust's count of rebalances."""
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)
        self.rebalances.set_function(lambda: float(rebalances()))


class MeteredModels(TritonModels):
    """The worker's Triton client, timing each request and counting its gRPC status code."""

    def __init__(self, settings: Settings, tokenizer: TextTokenizer, metrics: WorkerMetrics) -> None:
        super().__init__(settings, tokenizer)
        self._metrics = metrics

    async def _call(
        self, model: str, inputs: list[InferInput], requested: list[InferRequestedOutput], wait_s: float
    ) -> InferResult:
        started = time.monotonic()
        try:
            result = await super()._call(model, inputs, requested, wait_s)
        except InferenceServerException as exc:
            self._metrics.triton_request(model, classify(model, exc).status, time.monotonic() - started)
            raise
        self._metrics.triton_request(model, "OK", time.monotonic() - started)
        return result
