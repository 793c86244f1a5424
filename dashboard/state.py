"""What the dashboard knows: result records in, one JSON-ready snapshot for the page out.

Pure logic: no Kafka, no clock. Callers pass each record's Kafka timestamp and, for a snapshot,
`now`, so the unit tests feed records and check the figures. It applies the README's rules for
consumers of the result topics:
- an output whose id was already applied is a redelivery (a worker that crashed before its
  commit repeats the same outputs, with the same ids) and is dropped;
- a segment update whose `version` is not greater than the last one applied for its user is
  stale and is dropped.

Nothing here keeps customer text: outputs carry none by design, and dead letters (whose values
are the customer's bytes) are counted by their reason header only; their values never reach
this module. User ids are used as keys for segment populations and never leave it: the
snapshot has counts and segment names, not who is in them.

Latency is the end-to-end time the pipeline took for one input: the output record's Kafka
timestamp (the worker's producer stamps it when it sends the answer) minus the input record's
Kafka timestamp (stamped when the input was handed to its producer), joined by the output's
`source` {topic, partition, offset}. Both are create times written into the records, so the
figures do not depend on when the dashboard reads them, and a dashboard restarted later
computes the same ones.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dashboard.campaigns import CampaignFigures
from streams.campaigns import Campaign
from streams.pacing import cost_micros
from streams.schemas import BidResponse, BrandAlert, BrandWindow, CsReply, SegmentUpdate
from streams.schemas.adevents import AdOutcome
from streams.schemas.bids import NoBidReason

BUCKET_MS = 5_000  # throughput and latency over time, by record timestamp
BUCKETS = 120  # ten minutes of history
LATENCY_SAMPLES = 1_000  # per path, for the current p50 / p99
RECENT_CHANGES = 15
WINDOWS_PER_BRAND = 60
BRANDS_SHOWN = 12
ALERTS_SHOWN = 20
SEEN_IDS = 500_000  # output ids remembered for dropping redeliveries (these come soon after)
INPUT_TIMES = 200_000  # input timestamps kept for the latency join
WAITING = 50_000  # outputs read before their input, waiting for its timestamp

# The input topic an output path answers, for labelling latency on the page.
PATHS = {
    "cs-replies": "chat → cs-replies",
    "ad-bids": "bid-requests → ad-bids",
    "segment-updates": "clickstream/social → segment-updates",
}

Source = tuple[str, int, int]  # topic (with its prefix), partition, offset


class BoundedSet:
    """The most recent `capacity` keys; the oldest is forgotten first."""

    def __init__(self, capacity: int) -> None:
        self._keys: dict[object, None] = {}
        self._capacity = capacity

    def add(self, key: object) -> bool:
        """Remember `key`; False if it was already there."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._capacity:
            del self._keys[next(iter(self._keys))]
        return True

    def __len__(self) -> int:
        return len(self._keys)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def lag_from(
    ends: Mapping[tuple[str, int], int],
    starts: Mapping[tuple[str, int], int],
    committed: Mapping[tuple[str, int], int],
) -> dict[tuple[str, int], int]:
    """Records per partition the worker group has not committed: end minus committed offset, or
    end minus log start where the group never committed (retention may have moved the start)."""
    out = {}
    for tp, end in ends.items():
        done = committed.get(tp, -1)
        out[tp] = max(0, end - (done if done >= 0 else starts.get(tp, 0)))
    return out


@dataclass
class _Bucket:
    inputs: int = 0
    outputs: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class _Window:
    start_ms: int
    volume: int
    share_negative: float
    mean_p_positive: float


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


class Dashboard:
    """The aggregates behind the page. Not thread-safe: the caller holds one lock around it."""

    def __init__(self, *, campaigns: Iterable[Campaign] = ()) -> None:
        self.version = 0  # bumped by every change, so an unchanged state is not sent again
        self._seen = BoundedSet(SEEN_IDS)
        self.duplicates = 0
        self.stale_segment_versions = 0
        self.undecodable: Counter[str] = Counter()
        self.records_read = 0
        # latency join
        self._input_ts: dict[Source, int] = {}
        self._waiting: dict[Source, list[tuple[str, int]]] = {}
        self._latency: dict[str, deque[float]] = {p: deque(maxlen=LATENCY_SAMPLES) for p in PATHS}
        self._buckets: dict[int, _Bucket] = {}
        self._newest_bucket = -1
        # segments
        self._users: dict[str, tuple[int, frozenset[str]]] = {}
        self.population: Counter[str] = Counter()
        self.entered: Counter[str] = Counter()
        self.exited: Counter[str] = Counter()
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_CHANGES)
        # customer service
        self.actions: Counter[str] = Counter()
        self.intents: Counter[str] = Counter()
        self.queues: Counter[str] = Counter()
        self.sentiment: Counter[str] = Counter()
        # campaigns
        self.bids = 0
        self.no_bids = 0
        self.no_bid_reasons: Counter[int] = Counter()
        self._campaign_figures = CampaignFigures({c.id: c for c in campaigns})
        # brands
        self._windows: dict[str, dict[int, _Window]] = {}
        self._alerts: list[dict[str, Any]] = []
        # health
        self.dead_letters: Counter[tuple[str, str]] = Counter()
        self._lag: dict[tuple[str, int], int] | None = None
        self._lag_at_ms: int | None = None

    # --- records in --------------------------------------------------------------------------

    def _first(self, output_id: str) -> bool:
        self.records_read += 1
        if self._seen.add(output_id):
            return True
        self.duplicates += 1
        self.version += 1
        return False

    def _bucket(self, ms: int) -> _Bucket:
        start = ms - ms % BUCKET_MS
        if start > self._newest_bucket:
            self._newest_bucket = start
            for old in [b for b in self._buckets if b <= start - BUCKETS * BUCKET_MS]:
                del self._buckets[old]
        if start <= self._newest_bucket - BUCKETS * BUCKET_MS:
            return _Bucket()  # older than the history kept: counted nowhere
        return self._buckets.setdefault(start, _Bucket())

    def _output(self, path: str | None, source: Source | None, timestamp_ms: int | None) -> None:
        self.version += 1
        if timestamp_ms is None:
            return
        self._bucket(timestamp_ms).outputs += 1
        if path is None or source is None:
            return
        sent = self._input_ts.get(source)
        if sent is not None:
            self._sample(path, timestamp_ms, timestamp_ms - sent)
            return
        self._waiting.setdefault(source, []).append((path, timestamp_ms))
        if len(self._waiting) > WAITING:
            del self._waiting[next(iter(self._waiting))]

    def _sample(self, path: str, at_ms: int, latency_ms: float) -> None:
        self._latency[path].append(latency_ms)
        self._bucket(at_ms).latencies_ms.append(latency_ms)

    def input_record(self, topic: str, partition: int, offset: int, timestamp_ms: int | None) -> None:
        """An input record was read: only where it is and when it was produced (never its value)."""
        self.records_read += 1
        if timestamp_ms is None:
            return
        self.version += 1
        self._bucket(timestamp_ms).inputs += 1
        source = (topic, partition, offset)
        self._input_ts[source] = timestamp_ms
        if len(self._input_ts) > INPUT_TIMES:
            del self._input_ts[next(iter(self._input_ts))]
        for path, at_ms in self._waiting.pop(source, ()):
            self._sample(path, at_ms, at_ms - timestamp_ms)

    def segment_update(self, update: SegmentUpdate, timestamp_ms: int | None) -> bool:
        """Apply one update; False if it was a duplicate or a stale version."""
        if not self._first(update.update_id):
            return False
        last = self._users.get(update.user_id)
        if last is not None and update.version <= last[0]:
            self.stale_segment_versions += 1
            self.version += 1
            return False
        old = last[1] if last else frozenset()
        new = frozenset(update.segments)
        self._users[update.user_id] = (update.version, new)
        self.population.subtract(old - new)
        self.population.update(new - old)
        self.entered.update(update.entered)
        self.exited.update(update.exited)
        self._recent.appendleft(
            {
                "t": timestamp_ms if timestamp_ms is not None else _ms(update.ts),
                "version": update.version,
                "entered": list(update.entered),
                "exited": list(update.exited),
            }
        )
        src = update.source
        self._output("segment-updates", (src.topic, src.partition, src.offset), timestamp_ms)
        return True

    def cs_reply(self, reply: CsReply, timestamp_ms: int | None) -> bool:
        if not self._first(reply.reply_id):
            return False
        self.actions[reply.action] += 1
        self.intents[reply.intent] += 1
        self.sentiment[reply.sentiment.label.value] += 1
        if reply.action == "handoff":
            self.queues[reply.handoff_queue or "unspecified"] += 1
        src = reply.source
        self._output("cs-replies", (src.topic, src.partition, src.offset), timestamp_ms)
        return True

    def bid_response(self, response: BidResponse, timestamp_ms: int | None) -> bool:
        if not self._first(response.ext.response_id):
            return False
        if response.nbr is not None:
            self.no_bids += 1
            self.no_bid_reasons[int(response.nbr)] += 1
        else:
            self.bids += 1
            if timestamp_ms is not None:
                day = _day(timestamp_ms)
                for seat in response.seatbid:
                    for bid in seat.bid:
                        self._campaign_figures.bid(bid.cid, day, cost_micros(bid.price))
        src = response.ext.source
        self._output("ad-bids", (src.topic, src.partition, src.offset), timestamp_ms)
        return True

    def ad_outcome(self, outcome: AdOutcome, timestamp_ms: int | None) -> bool:
        """One booking the worker made from a notice or a reservation timeout."""
        if not self._first(outcome.outcome_id):
            return False
        self._campaign_figures.outcome(outcome)
        self._output(None, None, timestamp_ms)
        return True

    def brand_window(self, window: BrandWindow, timestamp_ms: int | None) -> bool:
        if not self._first(window.window_id):
            return False
        windows = self._windows.setdefault(window.brand, {})
        start = _ms(window.window_start)
        windows[start] = _Window(start, window.volume, window.share_negative, window.mean_p_positive)
        while len(windows) > WINDOWS_PER_BRAND:
            del windows[min(windows)]
        self._output(None, None, timestamp_ms)
        return True

    def brand_alert(self, alert: BrandAlert, timestamp_ms: int | None) -> bool:
        if not self._first(alert.alert_id):
            return False
        self._alerts.append(
            {
                "brand": alert.brand,
                "window_start": _ms(alert.window_start),
                "window_end": _ms(alert.window_end),
                "share_negative": alert.share_negative,
                "baseline_share_negative": alert.baseline_share_negative,
                "volume": alert.volume,
            }
        )
        self._output(None, None, timestamp_ms)
        return True

    def dead_letter(self, dlq_topic: str, reason: str, source: Source | None) -> bool:
        """One dead letter, by its `x-dlq-reason`; its value (the customer's bytes) is not passed in.
        A redelivered dead letter names the same source record and is dropped."""
        if source is not None and not self._first("dlq:{}/{}/{}".format(*source)):
            return False
        if source is None:
            self.records_read += 1
        self.dead_letters[(dlq_topic, reason)] += 1
        self.version += 1
        return True

    def undecodable_output(self, topic: str) -> None:
        """An output that fails its schema: counted, not shown."""
        self.records_read += 1
        self.undecodable[topic] += 1
        self.version += 1

    def set_lag(self, lag: Mapping[tuple[str, int], int], at_ms: int) -> None:
        self._lag = dict(lag)
        self._lag_at_ms = at_ms
        self.version += 1

    # --- snapshot out ------------------------------------------------------------------------

    def snapshot(self, now: datetime, *, prefix: str = "") -> dict[str, Any]:
        """Everything the page draws, as plain JSON values. `prefix` is cut from topic names."""
        return {
            "generated_at": _ms(now),
            "brands": self._brands(),
            "segments": self._segments(),
            "campaigns": self._campaigns(now),
            "cs": self._cs(),
            "health": self._health(prefix),
        }

    def _brands(self) -> dict[str, Any]:
        alerted = {a["brand"] for a in self._alerts}
        volume = {b: sum(w.volume for w in ws.values()) for b, ws in self._windows.items()}
        shown = sorted(self._windows, key=lambda b: (b not in alerted, -volume[b], b))[:BRANDS_SHOWN]
        series = [
            {
                "brand": brand,
                "alerts": sum(1 for a in self._alerts if a["brand"] == brand),
                "points": [
                    {
                        "t": w.start_ms,
                        "volume": w.volume,
                        "share_negative": w.share_negative,
                        "mean_p_positive": w.mean_p_positive,
                    }
                    for w in sorted(self._windows[brand].values(), key=lambda w: w.start_ms)
                ],
            }
            for brand in sorted(shown)
        ]
        alerts = sorted(self._alerts, key=lambda a: (a["window_start"], a["brand"]), reverse=True)
        return {"series": series, "alerts": alerts[:ALERTS_SHOWN], "alert_count": len(self._alerts)}

    def _segments(self) -> dict[str, Any]:
        names = sorted(set(self.population) | set(self.entered) | set(self.exited))
        return {
            "users": len(self._users),
            "rows": [
                {
                    "segment": s,
                    "population": self.population[s],
                    "entered": self.entered[s],
                    "exited": self.exited[s],
                }
                for s in names
            ],
            "recent": list(self._recent),
        }

    def _campaigns(self, now: datetime) -> dict[str, Any]:
        reasons = [
            {"nbr": code, "name": _nbr_name(code), "count": n}
            for code, n in sorted(self.no_bid_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        return {
            "bids": self.bids,
            "no_bids": self.no_bids,
            "no_bid_reasons": reasons,
            "rows": self._campaign_figures.rows(now),
        }

    def _cs(self) -> dict[str, Any]:
        return {
            "replies": self.actions["reply"],
            "handoffs": self.actions["handoff"],
            "intents": _counted(self.intents, "intent"),
            "queues": _counted(self.queues, "queue"),
            "sentiment": _counted(self.sentiment, "label"),
        }

    def _health(self, prefix: str) -> dict[str, Any]:
        series = []
        for start in sorted(self._buckets):
            bucket = self._buckets[start]
            series.append(
                {
                    "t": start,
                    "inputs_per_s": bucket.inputs * 1000 / BUCKET_MS,
                    "outputs_per_s": bucket.outputs * 1000 / BUCKET_MS,
                    "p50_ms": percentile(bucket.latencies_ms, 50),
                    "p99_ms": percentile(bucket.latencies_ms, 99),
                }
            )
        latency = [
            {
                "output": base,
                "path": label,
                "samples": len(self._latency[base]),
                "p50_ms": percentile(self._latency[base], 50),
                "p99_ms": percentile(self._latency[base], 99),
            }
            for base, label in PATHS.items()
        ]
        lag_topics: Counter[str] = Counter()
        for (topic, _), n in (self._lag or {}).items():
            lag_topics[topic.removeprefix(prefix)] += n
        dlq = [
            {"topic": topic.removeprefix(prefix), "reason": reason, "count": n}
            for (topic, reason), n in sorted(self.dead_letters.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        return {
            "bucket_ms": BUCKET_MS,
            "throughput": series,
            "latency": latency,
            "lag": {
                "total": sum(lag_topics.values()) if self._lag is not None else None,
                "topics": [{"topic": t, "lag": n} for t, n in sorted(lag_topics.items())],
                "at": self._lag_at_ms,
            },
            "dead_letters": {
                "total": sum(self.dead_letters.values()),
                "by_reason": _counted(_by_reason(self.dead_letters), "reason"),
                "rows": dlq,
            },
            "dropped": {
                "duplicates": self.duplicates,
                "stale_segment_versions": self.stale_segment_versions,
                "undecodable": sum(self.undecodable.values()),
            },
            "records_read": self.records_read,
        }


def _by_reason(dead_letters: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (_, reason), n in dead_letters.items():
        out[reason] += n
    return out


def _counted(counter: Counter[str], name: str) -> list[dict[str, Any]]:
    return [
        {name: key, "count": n} for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0
    ]


def _nbr_name(code: int) -> str:
    try:
        return NoBidReason(code).name.lower()
    except ValueError:
        return "unknown"
