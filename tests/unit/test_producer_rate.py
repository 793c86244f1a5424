"""The producer's rate limit holds even while delivery reports keep poll() returning early."""

from __future__ import annotations

import time
from typing import Any

import pytest

import producers.kafka as pk
from producers.events import Produced
from streams.settings import Settings


class _FastPollProducer:
    """Stands in for librdkafka: every poll() returns at once, as when reports are pending."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.pending: list[Any] = []

    def produce(
        self, topic: str, key: bytes | None, value: bytes, on_delivery: Any, headers: Any = None
    ) -> None:
        self.pending.append((on_delivery, topic))

    def poll(self, timeout: float = 0) -> int:
        time.sleep(min(timeout, 0.001))
        served = self.pending[:1]
        self.pending = self.pending[1:]
        for cb, topic in served:
            cb(None, type("M", (), {"topic": staticmethod(lambda t=topic: t)})())
        return len(served)

    def flush(self, timeout: float) -> int:
        while self.pending:
            self.poll(0)
        return 0


def test_rate_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pk, "Producer", _FastPollProducer)
    records = [Produced("chat", b"k", b"{}") for _ in range(21)]
    report = pk.produce(Settings(), records, rate=100.0)
    assert report.delivered["chat"] == 21
    assert report.elapsed_s >= 0.19  # 20 intervals of 10 ms
