"""Every metric the worker exports, defined in one place, on a registry of its own per app (not
prometheus_client's global one, so that tests can build several apps in one process).

Names follow what people already alert on: the `marketing_scorer_` prefix, the process metrics
of prometheus_client's own collectors (`process_start_time_seconds` counts restarts).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector

PREFIX = "marketing_scorer"


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.ready = Gauge(
            f"{PREFIX}_ready",
            "1 when /ready answers 200: assigned after a completed rebalance, models ready, not stopping",
            registry=self.registry,
        )

    def track_readiness(self, ready: Callable[[], bool]) -> None:
        """The ready gauge, read at each scrape."""
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)
