"""Win, billing and loss notices (nurl, burl, lurl): verified here, booked by the worker.

A notice moves money, so only one whose signature holds (`streams.signing`) goes on: unsigned,
an unknown key or a changed value -> 403; a macro that is not a price, or a clearing price
above what we bid -> 400. A notice this gateway has already taken (its `notice_id`, in an LRU)
-> 200 without forwarding it again; the worker drops duplicates too, across gateways and
restarts. Else the verified `AdEvent` is written to ad-events, to the partition named in the
signed URL (whose worker holds the bid's reservation) and keyed by the bid's user, and the
answer is 200 only once Kafka acknowledged it: 503 if it refused, so the exchange retries.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from streams.gateway.bus import Bus, KafkaUnavailable
from streams.gateway.metrics import GatewayMetrics
from streams.schemas.adevents import NoticeKind
from streams.serde import encode
from streams.settings import Settings
from streams.signing import AUDIT, NoticeRejected, NoticeSigner, is_audit, macro_price, macro_value

log = logging.getLogger("streams.gateway.notices")

SEEN_NOTICES = 100_000  # notice ids remembered for replay detection (~10 MB)
PRICE_TOLERANCE = 1e-6  # CPM: the signed price has 4 decimals


@dataclass(frozen=True)
class NoticeAnswer:
    status: int
    outcome: str


class SeenNotices:
    """The most recent `capacity` notice ids, oldest forgotten first."""

    def __init__(self, capacity: int = SEEN_NOTICES) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, notice_id: object) -> bool:
        return notice_id in self._ids

    def add(self, notice_id: str) -> None:
        self._ids[notice_id] = None
        self._ids.move_to_end(notice_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def discard(self, notice_id: str) -> None:
        self._ids.pop(notice_id, None)


class NoticeDesk:
    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        signer: NoticeSigner,
        metrics: GatewayMetrics,
        *,
        seen: SeenNotices | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._topic = settings.topics.ad_events
        self.bus = bus
        self.signer = signer
        self.metrics = metrics
        self.seen = seen or SeenNotices()
        self.wall = wall

    async def take(self, kind: NoticeKind, query: Mapping[str, str]) -> NoticeAnswer:
        answer = await self._take(kind, query)
        self.metrics.notices.labels(kind.value, answer.outcome).inc()
        return answer

    async def _take(self, kind: NoticeKind, query: Mapping[str, str]) -> NoticeAnswer:
        try:
            ticket = self.signer.verify(kind, query)
        except NoticeRejected as exc:
            return NoticeAnswer(400 if exc.reason == "malformed" else 403, exc.reason)
        try:
            price = macro_price(query, "price")
            min_to_win = macro_price(query, "mtw")
            # the loss code only means something on a loss notice: garbage there is malformed,
            # elsewhere it must not cost us a win or a billing
            loss_text = macro_value(query, "loss") if kind is NoticeKind.LOSS else None
            loss = None if loss_text is None or loss_text == AUDIT else int(loss_text)
        except (NoticeRejected, ValueError):
            return NoticeAnswer(400, "malformed")
        if price is not None and price > ticket.bid_price + PRICE_TOLERANCE:
            return NoticeAnswer(400, "price_above_bid")
        event = ticket.event(
            kind,
            datetime.fromtimestamp(self.wall(), UTC),
            price=price,
            loss=loss,
            min_to_win=min_to_win,
            audit=is_audit(query),
        )
        if event.notice_id in self.seen:
            return NoticeAnswer(200, "duplicate")
        self.seen.add(event.notice_id)  # before the send: a concurrent copy is a duplicate too
        try:
            await self.bus.send(
                self._topic, encode(event), key=ticket.user.encode(), partition=ticket.partition
            )
        except KafkaUnavailable as exc:
            self.seen.discard(event.notice_id)  # not taken: the exchange's retry must go through
            self.metrics.kafka_errors.labels(self._topic).inc()
            log.warning("a %s notice for %s was refused by Kafka: %s", kind.value, ticket.bid_id, exc)
            return NoticeAnswer(503, "kafka_error")
        return NoticeAnswer(200, "audit" if event.audit else "accepted")
