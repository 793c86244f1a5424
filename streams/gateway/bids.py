"""A BidRequest over HTTP: validated, forwarded to the worker owning the user's partition over
Kafka, answered from its reply or at the deadline, whichever comes first, exactly once.

The deadline counts from the request's arrival: tmax (else `gateway_default_tmax_ms`) less
`gateway_network_allowance_ms`, the time the answer needs to reach the exchange. The worker gets
it as epoch ms (`ms-deadline-ms`) and keeps its own margin for the way back.

Answers: a bid -> 200 with the worker's BidResponse as it wrote it; a no-bid -> 204; the deadline
first -> 204 (a deadline miss); an invalid body -> 400 with an nbr-2 BidResponse when its `id` can
be read, and its bytes forwarded to bid-requests marked as answered, so the worker dead-letters
it with its reason exactly as it does a record from any other producer. Every answer is written
to ad-bids as well (the reply as is, a deadline no-bid with nbr 15, the 400's nbr 2), so Kafka
consumers see what the exchange got. A reply that comes after its request was answered is
ignored, and its bids' reservations are released at once with a loss event (loss 2, impression
opportunity expired) rather than held until the notice timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from pydantic import TypeAdapter, ValidationError

from streams.errors import BadInput, Reason
from streams.gateway.bus import Bus, Delivered, KafkaUnavailable
from streams.gateway.metrics import GatewayMetrics
from streams.gateway.pending import Pending
from streams.replyto import HEADER_ANSWERED, HEADER_CORRELATION, HEADER_DEADLINE_MS, HEADER_GATEWAY
from streams.schemas import BidRequest, BidResponse
from streams.schemas.adevents import NoticeKind
from streams.schemas.bids import NoBidReason, ResponseExt
from streams.schemas.common import Id, SourceRef
from streams.serde import decode, encode
from streams.settings import Settings
from streams.signing import NoticeRejected, NoticeSigner

log = logging.getLogger("streams.gateway.bids")

LOSS_EXPIRED = 2  # OpenRTB 2.6 loss reason: impression opportunity expired
_REQUEST_ID: TypeAdapter[str] = TypeAdapter(Id)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    outcome: str = ""


class BidGateway:
    """`background` tasks (writes to ad-bids, releases) are kept until done, and awaited by `drain`."""

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        metrics: GatewayMetrics,
        signer: NoticeSigner,
        *,
        pending: Pending | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.metrics = metrics
        self.signer = signer
        self.pending = pending or Pending()
        self.clock = clock
        self.wall = wall
        self._topics = settings.topics
        self._background: set[asyncio.Task[Any]] = set()

    # --- one request ------------------------------------------------------------------------------

    async def answer(self, raw: bytes, arrived: float, arrived_wall_s: float) -> Answer:
        """`arrived` on `clock` (monotonic), `arrived_wall_s` on `wall`, read together on arrival."""
        try:
            request = decode(raw, BidRequest, max_bytes=self.settings.max_message_bytes)
        except BadInput as exc:
            return await self._invalid(raw, exc, arrived + self._budget_ms(_tmax(raw)) / 1000.0)
        budget_ms = self._budget_ms(request.tmax)
        deadline = arrived + budget_ms / 1000.0
        corr, reply = self.pending.open()
        headers = [
            (HEADER_GATEWAY, self.bus.instance.encode()),
            (HEADER_CORRELATION, corr.encode()),
            (HEADER_DEADLINE_MS, str(int(arrived_wall_s * 1000 + budget_ms)).encode()),
        ]
        key = request.key
        forwarding = asyncio.ensure_future(
            self.bus.send(self._topics.bid_requests, raw, key=key.encode(), headers=headers)
        )
        forwarding.add_done_callback(lambda f: self._forwarded(f, corr))
        await asyncio.wait([reply], timeout=max(0.0, deadline - self.clock()))
        self.pending.close(corr)  # from here on, a reply is late
        if reply.done() and reply.exception() is None:
            value = reply.result()
            self._spawn(self._record(key, value))
            return Answer(200, value, "bid") if _has_bid(value) else Answer(204, b"", "no_bid")
        if reply.done():  # the forward failed: Kafka refused the request
            return Answer(204, b"", "kafka_error")
        self.metrics.deadline_misses.inc()
        self._spawn(self._record_deadline(forwarding, request, key))
        return Answer(204, b"", "deadline")

    def _budget_ms(self, tmax: int | None) -> float:
        return (tmax or self.settings.gateway_default_tmax_ms) - self.settings.gateway_network_allowance_ms

    def _forwarded(self, sending: asyncio.Future[Delivered], corr: str) -> None:
        if sending.cancelled() or sending.exception() is None:
            return
        exc = sending.exception()
        assert exc is not None
        self.metrics.kafka_errors.labels(self._topics.bid_requests).inc()
        log.warning("forwarding a bid request failed: %s", exc)
        self.pending.fail(corr, exc)

    async def _invalid(self, raw: bytes, error: BadInput, deadline: float) -> Answer:
        request_id, key = _identity(raw)
        headers = [(HEADER_ANSWERED, b"400")]
        try:
            delivered = await asyncio.wait_for(
                self.bus.send(
                    self._topics.bid_requests, raw, key=key.encode() if key else None, headers=headers
                ),
                timeout=max(0.001, deadline - self.clock()),
            )
        except (KafkaUnavailable, TimeoutError) as exc:
            # not forwarded, so not dead-lettered either: say so loudly, with the reason
            self.metrics.kafka_errors.labels(self._topics.bid_requests).inc()
            log.error("an invalid bid request (%s) could not be forwarded: %r", error.reason.value, exc)
            return Answer(400, b"", "invalid")
        if request_id is None:
            return Answer(400, b"", "invalid")
        source = SourceRef(
            topic=self._topics.bid_requests, partition=delivered.partition, offset=delivered.offset
        )
        reasons = [error.reason.value, *([error.detail] if error.reason is Reason.SCHEMA else [])]
        ext = ResponseExt(response_id=f"bid:{source.record_id}", reasons=reasons, source=source)
        body = encode(BidResponse(id=request_id, nbr=NoBidReason.INVALID_REQUEST, ext=ext))
        self._spawn(self._record(key or request_id, body))
        return Answer(400, body, "invalid")

    # --- replies ---------------------------------------------------------------------------------

    def on_replies(self, replies: list[tuple[str, bytes]]) -> None:
        """The reply consumer's records for this instance (on the loop's thread)."""
        for corr, value in replies:
            if not self.pending.deliver(corr, value):
                self.metrics.late_replies.inc()
                if _has_bid(value):
                    self._spawn(self.release(value))

    async def release(self, reply: bytes) -> int:
        """A loss event (loss 2) for each bid of a reply the exchange never saw; how many were written."""
        written = 0
        for bid in _bids(reply):
            lurl = bid.get("lurl")
            if not isinstance(lurl, str):
                continue
            query = dict(parse_qsl(urlsplit(lurl).query, keep_blank_values=True))
            try:
                ticket = self.signer.verify(NoticeKind.LOSS, query)
            except NoticeRejected as exc:
                log.error(
                    "a late bid's loss URL does not verify (%s): its reservation waits for the timeout", exc
                )
                continue
            event = ticket.event(NoticeKind.LOSS, datetime.fromtimestamp(self.wall(), UTC), loss=LOSS_EXPIRED)
            try:
                await self.bus.send(
                    self._topics.ad_events,
                    encode(event),
                    key=ticket.user.encode(),
                    partition=ticket.partition,
                )
            except KafkaUnavailable as exc:
                self.metrics.kafka_errors.labels(self._topics.ad_events).inc()
                log.error("releasing late bid %s failed: %s", ticket.bid_id, exc)
                continue
            self.metrics.late_bids_released.inc()
            written += 1
        return written

    # --- ad-bids ---------------------------------------------------------------------------------

    async def _record(self, key: str, value: bytes) -> None:
        try:
            await self.bus.send(self._topics.ad_bids, value, key=key.encode())
        except KafkaUnavailable as exc:
            self.metrics.kafka_errors.labels(self._topics.ad_bids).inc()
            log.error("an answer could not be written to %s: %s", self._topics.ad_bids, exc)

    async def _record_deadline(
        self, forwarding: asyncio.Future[Delivered], request: BidRequest, key: str
    ) -> None:
        """The deadline no-bid on ad-bids, identified by the forwarded record like the worker's
        answer would have been (so a consumer can tell the two apart by id)."""
        try:
            delivered = await forwarding
        except KafkaUnavailable:
            return  # counted by _forwarded; the request never reached a worker
        source = SourceRef(
            topic=self._topics.bid_requests, partition=delivered.partition, offset=delivered.offset
        )
        ext = ResponseExt(
            response_id=f"bid:{source.record_id}",
            reasons=["gateway_deadline_passed_before_reply"],
            source=source,
        )
        answer = BidResponse(id=request.id, nbr=NoBidReason.INSUFFICIENT_AUCTION_TIME, ext=ext)
        await self._record(key, encode(answer))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for the writes still under way (at shutdown, after the last answer)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


# --- reading bodies ------------------------------------------------------------------------------


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _tmax(raw: bytes) -> int | None:
    """The request's tmax when it is a positive integer (also for an invalid request)."""
    body = _json(raw)
    tmax = body.get("tmax") if isinstance(body, dict) else None
    return tmax if type(tmax) is int and tmax > 0 else None


def _identity(raw: bytes) -> tuple[str | None, str | None]:
    """(request id, key) of an invalid request, as the worker reads them (answer_invalid_request):
    the id when it is a valid Id, the key `user.id` else the id."""
    body = _json(raw)
    if not isinstance(body, dict):
        return None, None
    try:
        request_id = _REQUEST_ID.validate_python(body.get("id"), strict=True)
    except ValidationError:
        request_id = None
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    key = user_id if isinstance(user_id, str) and user_id else request_id
    return request_id, key


def _bids(reply: bytes) -> list[dict[str, Any]]:
    body = _json(reply)
    if not isinstance(body, dict):
        return []
    return [
        bid
        for seatbid in body.get("seatbid") or ()
        if isinstance(seatbid, dict)
        for bid in seatbid.get("bid") or ()
        if isinstance(bid, dict)
    ]


def _has_bid(reply: bytes) -> bool:
    return bool(_bids(reply))
