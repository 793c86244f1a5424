"""Topic names, in one place for the worker, the producers, the stack and docker compose.

Every input topic has its own dead-letter topic `<input>.dlq`, so an operator replaying bad
records after a fix knows where they came from without reading headers.
"""

from __future__ import annotations

from dataclasses import dataclass

INPUTS = ("clickstream", "chat", "social", "bid-requests", "ad-events")
# Written and read by the worker itself: scored posts re-keyed by brand, so that one worker
# holds each brand's window whichever users wrote about it.
INTERNAL = ("social-scored",)
OUTPUTS = (
    "segment-updates",
    "ad-bids",
    "cs-replies",
    "brand-sentiment",
    "brand-alerts",
    "ad-outcomes",
    # the worker's answers to bid requests that came through the HTTP gateway, read back by it
    # (streams.gateway); what the gateway answered is then written to ad-bids
    "bid-replies",
)
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topics:
    prefix: str = ""

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def clickstream(self) -> str:
        return self.name("clickstream")

    @property
    def chat(self) -> str:
        return self.name("chat")

    @property
    def social(self) -> str:
        return self.name("social")

    @property
    def bid_requests(self) -> str:
        return self.name("bid-requests")

    @property
    def social_scored(self) -> str:
        return self.name("social-scored")

    @property
    def brand_sentiment(self) -> str:
        return self.name("brand-sentiment")

    @property
    def brand_alerts(self) -> str:
        return self.name("brand-alerts")

    @property
    def segment_updates(self) -> str:
        return self.name("segment-updates")

    @property
    def ad_bids(self) -> str:
        return self.name("ad-bids")

    @property
    def cs_replies(self) -> str:
        return self.name("cs-replies")

    @property
    def ad_events(self) -> str:
        return self.name("ad-events")

    @property
    def ad_outcomes(self) -> str:
        return self.name("ad-outcomes")

    @property
    def bid_replies(self) -> str:
        return self.name("bid-replies")

    def dlq(self, input_topic: str) -> str:
        return f"{input_topic}{DLQ_SUFFIX}"

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.name(t) for t in INPUTS)

    @property
    def internal(self) -> tuple[str, ...]:
        return tuple(self.name(t) for t in INTERNAL)

    @property
    def consumed(self) -> tuple[str, ...]:
        """Every topic a worker reads: the inputs and its internal topics."""
        return self.inputs + self.internal

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.name(t) for t in OUTPUTS)

    @property
    def dead_letters(self) -> tuple[str, ...]:
        return tuple(self.dlq(t) for t in self.consumed)

    def all(self) -> tuple[str, ...]:
        return self.consumed + self.outputs + self.dead_letters
