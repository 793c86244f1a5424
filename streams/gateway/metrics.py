"""The gateway's Prometheus metrics, on a registry of its own (as `streams.metrics` does for the
worker), served at `/metrics` beside `/health` and `/ready`.

Every label set is small and fixed: status (the HTTP code), outcome (what the answer was),
kind and outcome of a notice, topic of a failed write.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from streams.metrics import PREFIX

# Milliseconds from a request's arrival to its answer: tmax is ~100 ms, so the buckets are dense there.
ANSWER_MS_BUCKETS = (1, 2.5, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 1000, 2500)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter(
            f"{PREFIX}_gateway_requests",
            "Bid requests answered, by HTTP status and outcome (bid, no_bid, deadline, invalid, "
            "too_large, read_timeout, overloaded, kafka_error)",
            ["status", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_gateway_answer_ms",
            "From a bid request's arrival to its answer, in milliseconds",
            buckets=ANSWER_MS_BUCKETS,
            registry=r,
        )
        self.deadline_misses = Counter(
            f"{PREFIX}_gateway_deadline_misses",
            "Bid requests answered with a no-bid because the worker's reply did not come by the deadline",
            registry=r,
        )
        self.late_replies = Counter(
            f"{PREFIX}_gateway_late_replies",
            "Worker replies that came after their request was answered (ignored)",
            registry=r,
        )
        self.late_bids_released = Counter(
            f"{PREFIX}_gateway_late_bids_released",
            "Bids of late replies whose reservation was released with a loss event (loss 2)",
            registry=r,
        )
        self.notices = Counter(
            f"{PREFIX}_gateway_notices",
            "Notices by kind and outcome (accepted, duplicate, unsigned, unknown_key, bad_signature, "
            "malformed, price_above_bid, kafka_error)",
            ["kind", "outcome"],
            registry=r,
        )
        self.kafka_errors = Counter(
            f"{PREFIX}_gateway_kafka_errors",
            "Records Kafka did not acknowledge, by topic",
            ["topic"],
            registry=r,
        )
        self.in_flight = Gauge(f"{PREFIX}_gateway_in_flight", "Bid requests being answered now", registry=r)

    def answered(self, status: int, outcome: str, elapsed_s: float) -> None:
        self.requests.labels(str(status), outcome).inc()
        self.latency.observe(elapsed_s * 1000.0)
