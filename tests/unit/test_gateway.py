"""The HTTP gateway, served for real on a loopback port (`streams.gateway.server.runner_for`, the
runner the process uses, with its header and keep-alive bounds) in front of a fake Kafka bus: a
scripted worker answers what is forwarded to bid-requests, after a delay it is told.

Deadlines are measured against the test's own clock; expected values come from the request
(tmax, allowance) and from the signer, not from the gateway."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import orjson
import pytest
from aiohttp import web

from streams.errors import ConfigError
from streams.gateway import server
from streams.gateway.bids import BidGateway
from streams.gateway.bus import Delivered, Headers, KafkaUnavailable
from streams.gateway.metrics import GatewayMetrics
from streams.gateway.notices import NoticeDesk
from streams.replyto import HEADER_ANSWERED, HEADER_CORRELATION, HEADER_DEADLINE_MS, HEADER_GATEWAY
from streams.schemas import BidResponse
from streams.schemas.adevents import AdEvent, NoticeKind
from streams.schemas.bids import Bid, NoBidReason, ResponseExt, SeatBid
from streams.schemas.common import SourceRef
from streams.settings import Settings
from streams.signing import Ticket

INSTANCE = "gw-test"
SETTINGS = Settings(
    gateway_port=0,
    gateway_read_timeout_s=0.3,
    gateway_max_body_bytes=4096,
    max_message_bytes=4096,
    gateway_network_allowance_ms=10.0,
    gateway_default_tmax_ms=120,
    notice_base_url="http://127.0.0.1:8080/openrtb2/notice",
)
SIGNER = SETTINGS.notice_signer()
BASE = SETTINGS.notice_base_url


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None


Worker = Callable[[dict[str, Any]], tuple[float, bytes] | None]  # request -> (delay s, reply) or silence


@dataclass
class FakeBus:
    """Kafka as the gateway sees it: acks at once (unless refused), and a scripted worker."""

    instance: str = INSTANCE
    sent: list[Sent] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    worker: Worker | None = None
    gateway: BidGateway | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Delivered:
        if topic in self.refuse:
            raise KafkaUnavailable(f"{topic}: refused")
        self.sent.append(Sent(topic, key, value, list(headers), partition))
        async with self.changed:
            self.changed.notify_all()
        hdrs = dict(headers)
        if topic == SETTINGS.topics.bid_requests and HEADER_CORRELATION in hdrs and self.worker:
            scripted = self.worker(orjson.loads(value))
            if scripted is not None:
                delay, reply = scripted
                corr = hdrs[HEADER_CORRELATION].decode()
                assert self.gateway is not None
                asyncio.get_running_loop().call_later(delay, self.gateway.on_replies, [(corr, reply)])
        return Delivered(partition if partition is not None else 3, len(self.sent) - 1)

    def ready(self) -> bool:
        return True

    async def until(self, topic: str, n: int = 1) -> None:
        """Until `n` records were sent to `topic` (within 1 s)."""
        async with asyncio.timeout(1), self.changed:
            await self.changed.wait_for(lambda: len(self.on(topic)) >= n)

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == SETTINGS.topics.name(topic)]


@dataclass
class Gateway:
    url: str
    bus: FakeBus
    bids: BidGateway
    metrics: GatewayMetrics
    session: aiohttp.ClientSession
    host: str
    port: int

    def bid_url(self) -> str:
        return self.url + SETTINGS.gateway_bid_path

    async def settle(self) -> None:
        """Wait for the gateway's background writes (ad-bids, releases)."""
        await asyncio.wait_for(self.bids.drain(), 2)


@pytest.fixture
async def gw() -> AsyncIterator[Gateway]:
    bus = FakeBus()
    metrics = GatewayMetrics()
    bids = BidGateway(SETTINGS, bus, metrics, SIGNER)
    bus.gateway = bids
    notices = NoticeDesk(SETTINGS, bus, SIGNER, metrics)

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    runner = server.runner_for(server.make_app(SETTINGS, bids, notices, metrics, ready), SETTINGS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    identity = {"Accept-Encoding": "identity"}  # aiohttp's client asks for gzip by default
    async with aiohttp.ClientSession(auto_decompress=False, headers=identity) as session:
        yield Gateway(f"http://{host}:{port}", bus, bids, metrics, session, host, port)
    await runner.cleanup()


def request(user: str | None = "u1", **top: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "req-1",
        "imp": [{"id": "1", "bidfloor": 0.1, "banner": {"w": 300, "h": 250}}],
        "site": {"id": "s1", "domain": "recipes.example"},
        **top,
    }
    if user is not None:
        body["user"] = {"id": user}
    return body


def ticket(price: float = 2.5, partition: int = 1, user: str = "u1") -> Ticket:
    return Ticket("req-1:1", "1", "avocado", user, partition, price, 1_700_000_000_000, 1)


def bid_reply(request_id: str = "req-1", price: float = 2.5, partition: int = 1) -> bytes:
    t = ticket(price, partition)
    bid = Bid(
        id=t.bid_id,
        impid="1",
        price=price,
        adomain=["avocado.example"],
        crid="c1",
        nurl=SIGNER.url(BASE, NoticeKind.WIN, t),
        burl=SIGNER.url(BASE, NoticeKind.BILLING, t),
        lurl=SIGNER.url(BASE, NoticeKind.LOSS, t),
    )
    source = SourceRef(topic="bid-requests", partition=partition, offset=7)
    ext = ResponseExt(response_id="bid:bid-requests/1/7", reasons=["r"], source=source)
    return orjson.dumps(
        BidResponse(id=request_id, seatbid=[SeatBid(bid=[bid], seat="s")], cur="USD", ext=ext).model_dump(
            mode="json", exclude_none=True
        )
    )


def no_bid_reply(request_id: str = "req-1") -> bytes:
    source = SourceRef(topic="bid-requests", partition=1, offset=8)
    ext = ResponseExt(response_id="bid:bid-requests/1/8", reasons=["no_history_for_user"], source=source)
    return orjson.dumps(
        BidResponse(id=request_id, nbr=NoBidReason.UNMATCHED_USER, ext=ext).model_dump(mode="json")
    )


def counter(gw: Gateway, name: str, **labels: str) -> float:
    return gw.metrics.registry.get_sample_value(name, labels) or 0.0


# --- bids ----------------------------------------------------------------------------------------


async def test_a_bid_reply_is_a_200_with_the_workers_response_and_goes_to_ad_bids(gw: Gateway) -> None:
    reply = bid_reply()
    gw.bus.worker = lambda req: (0.01, reply)
    before_ms = time.time() * 1000
    async with gw.session.post(gw.bid_url(), json=request(tmax=100)) as resp:
        assert resp.status == 200
        assert resp.headers["x-openrtb-version"] == "2.6"
        assert await resp.read() == reply
    after_ms = time.time() * 1000
    [forwarded] = gw.bus.on("bid-requests")
    assert forwarded.key == b"u1"  # user.id: the partition that holds the user's profile and caps
    headers = dict(forwarded.headers)
    assert headers[HEADER_GATEWAY] == INSTANCE.encode()
    deadline_ms = int(headers[HEADER_DEADLINE_MS])
    # arrival + tmax 100 - allowance 10
    assert before_ms + 90 - 1 <= deadline_ms <= after_ms + 90
    await gw.settle()
    assert [s.value for s in gw.bus.on("ad-bids")] == [reply]
    assert counter(gw, "marketing_scorer_gateway_requests_total", status="200", outcome="bid") == 1


async def test_a_no_bid_reply_is_a_204_and_still_goes_to_ad_bids(gw: Gateway) -> None:
    reply = no_bid_reply()
    gw.bus.worker = lambda req: (0.0, reply)
    async with gw.session.post(gw.bid_url(), json=request()) as resp:
        assert resp.status == 204 and await resp.read() == b""
        assert resp.headers["x-openrtb-version"] == "2.6"
    await gw.settle()
    assert [s.value for s in gw.bus.on("ad-bids")] == [reply]


async def test_no_reply_by_the_deadline_is_a_204_in_time_and_an_nbr_15_on_ad_bids(gw: Gateway) -> None:
    gw.bus.worker = lambda req: None  # a worker that never answers
    started = time.monotonic()
    async with gw.session.post(gw.bid_url(), json=request(tmax=60)) as resp:
        assert resp.status == 204
    took_ms = (time.monotonic() - started) * 1000
    assert 50 - 1 <= took_ms < 60, f"answered after {took_ms:.1f} ms, the deadline is 50 ms after arrival"
    await gw.settle()
    [recorded] = gw.bus.on("ad-bids")
    answer = BidResponse.model_validate(orjson.loads(recorded.value))
    assert answer.nbr == NoBidReason.INSUFFICIENT_AUCTION_TIME and answer.id == "req-1"
    assert answer.ext.response_id == "bid:bid-requests/3/0"  # the forwarded record's position
    assert counter(gw, "marketing_scorer_gateway_deadline_misses_total") == 1


async def test_without_tmax_the_default_deadline_applies(gw: Gateway) -> None:
    gw.bus.worker = lambda req: None
    started = time.monotonic()
    async with gw.session.post(gw.bid_url(), json=request()) as resp:
        assert resp.status == 204
    took_ms = (time.monotonic() - started) * 1000
    assert 110 - 1 <= took_ms < 120  # default tmax 120 - allowance 10: in time for the default


async def test_a_reply_racing_the_deadline_answers_once_and_a_late_bid_is_released(gw: Gateway) -> None:
    # tmax 40: deadline 30 ms after arrival; the bid comes at 45 ms
    gw.bus.worker = lambda req: (0.045, bid_reply(partition=2))
    async with gw.session.post(gw.bid_url(), json=request(tmax=40)) as resp:
        assert resp.status == 204
    await gw.bus.until("ad-events")
    await gw.settle()
    [recorded] = gw.bus.on("ad-bids")  # one answer: the deadline's, not the late bid
    assert (
        BidResponse.model_validate(orjson.loads(recorded.value)).nbr == NoBidReason.INSUFFICIENT_AUCTION_TIME
    )
    [loss] = gw.bus.on("ad-events")
    event = AdEvent.model_validate(orjson.loads(loss.value))
    expected = ticket(partition=2)
    assert (event.kind, event.loss, event.bid_id, event.bid_price) == (
        NoticeKind.LOSS,
        2,
        expected.bid_id,
        2.5,
    )
    assert (loss.partition, loss.key) == (2, b"u1")
    assert counter(gw, "marketing_scorer_gateway_late_replies_total") == 1
    assert counter(gw, "marketing_scorer_gateway_late_bids_released_total") == 1


async def test_a_reply_just_before_the_deadline_wins_and_a_duplicate_reply_is_late(gw: Gateway) -> None:
    reply = bid_reply()

    def worker(req: dict[str, Any]) -> tuple[float, bytes]:
        return 0.02, reply

    gw.bus.worker = worker
    async with gw.session.post(gw.bid_url(), json=request(tmax=40)) as resp:
        assert resp.status == 200
    corr = dict(gw.bus.on("bid-requests")[0].headers)[HEADER_CORRELATION].decode()
    gw.bids.on_replies([(corr, reply)])  # the same reply again (a redelivery): nobody waits for it
    await gw.settle()
    assert [s.value for s in gw.bus.on("ad-bids")] == [reply]
    assert counter(gw, "marketing_scorer_gateway_late_replies_total") == 1


async def test_gzip_both_ways(gw: Gateway) -> None:
    reply = bid_reply()
    gw.bus.worker = lambda req: (0.0, reply)
    body = gzip.compress(orjson.dumps(request()))
    headers = {"Content-Encoding": "gzip", "Accept-Encoding": "gzip", "Content-Type": "application/json"}
    async with gw.session.post(gw.bid_url(), data=body, headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await resp.read()) == reply
    assert orjson.loads(gw.bus.on("bid-requests")[0].value)["id"] == "req-1"  # decompressed
    async with gw.session.post(gw.bid_url(), json=request(), headers={"Accept-Encoding": "gzip;q=0"}) as resp:
        assert "Content-Encoding" not in resp.headers and await resp.read() == reply


async def test_a_body_over_the_limit_is_413_also_when_it_only_inflates_past_it(gw: Gateway) -> None:
    big = orjson.dumps(request(pad="x" * 5000))
    async with gw.session.post(gw.bid_url(), data=big) as resp:
        assert resp.status == 413
    bomb = gzip.compress(b"{" + b" " * 1_000_000 + b"}")
    assert len(bomb) < SETTINGS.gateway_max_body_bytes  # small on the wire
    async with gw.session.post(gw.bid_url(), data=bomb, headers={"Content-Encoding": "gzip"}) as resp:
        assert resp.status == 413
    assert gw.bus.sent == []


async def test_a_body_not_sent_within_the_read_timeout_is_408(gw: Gateway) -> None:
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    writer.write(
        f"POST {SETTINGS.gateway_bid_path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode()
    )
    await writer.drain()
    started = time.monotonic()
    status_line = await asyncio.wait_for(reader.readline(), 2)
    took = time.monotonic() - started
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert 0.3 - 0.01 <= took < 0.6


async def test_a_header_line_over_the_limit_is_refused(gw: Gateway) -> None:
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    writer.write(
        f"POST {SETTINGS.gateway_bid_path} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 9000}\r\n"
        "Content-Length: 2\r\n\r\n{}".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 2)
    writer.close()
    assert status_line.split()[1] in (b"400", b"431"), status_line
    assert gw.bus.sent == []


async def test_an_invalid_request_is_400_with_nbr_2_and_forwarded_marked_as_answered(gw: Gateway) -> None:
    raw = orjson.dumps({"id": "req-9", "imp": "none", "user": {"id": "u7"}})
    async with gw.session.post(gw.bid_url(), data=raw) as resp:
        assert resp.status == 400
        answer = BidResponse.model_validate(orjson.loads(await resp.read()))
    assert (answer.id, answer.nbr) == ("req-9", NoBidReason.INVALID_REQUEST)
    assert answer.ext.reasons[0] == "schema_invalid"
    [forwarded] = gw.bus.on("bid-requests")
    assert (forwarded.value, forwarded.key) == (raw, b"u7")  # the original bytes, keyed like the worker keys
    assert dict(forwarded.headers) == {HEADER_ANSWERED: b"400"}  # no reply headers: nobody waits
    await gw.settle()
    assert [orjson.loads(s.value) for s in gw.bus.on("ad-bids")] == [
        orjson.loads(orjson.dumps(answer.model_dump(mode="json", exclude_none=True)))
    ]
    async with gw.session.post(gw.bid_url(), data=b"not json") as resp:
        assert resp.status == 400 and await resp.read() == b""  # no id to answer
    assert [s.value for s in gw.bus.on("bid-requests")][-1] == b"not json"


async def test_beyond_the_in_flight_cap_a_request_gets_503_at_once(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "MAX_IN_FLIGHT", 1)
    gw.bus.worker = lambda req: None
    async with aiohttp.ClientSession() as other:
        waiting = asyncio.ensure_future(gw.session.post(gw.bid_url(), json=request(tmax=200)))
        await gw.bus.until("bid-requests")
        async with other.post(gw.bid_url(), json=request()) as resp:
            assert resp.status == 503
        first = await waiting
        assert first.status == 204
        first.release()


async def test_a_kafka_refusing_the_request_is_a_prompt_no_bid(gw: Gateway) -> None:
    gw.bus.refuse.add(SETTINGS.topics.bid_requests)
    started = time.monotonic()
    async with gw.session.post(gw.bid_url(), json=request(tmax=500)) as resp:
        assert resp.status == 204
    assert time.monotonic() - started < 0.2  # not held until the deadline
    assert counter(gw, "marketing_scorer_gateway_kafka_errors_total", topic="bid-requests") == 1


# --- notices -------------------------------------------------------------------------------------


def notice_url(gw: Gateway, kind: NoticeKind, t: Ticket, **macros: str) -> str:
    url = SIGNER.url(BASE, kind, t)
    for name, value in macros.items():
        url = url.replace(f"{name}=${{", f"{name}={value}&_{name}=${{")
    return gw.url + url[len("http://127.0.0.1:8080") :]


async def test_a_signed_billing_notice_goes_to_its_partition_once(gw: Gateway) -> None:
    t = ticket(price=2.5, partition=3, user="u9")
    url = notice_url(gw, NoticeKind.BILLING, t, price="1.75")
    async with gw.session.get(url) as resp:
        assert resp.status == 200
    [sent] = gw.bus.on("ad-events")
    event = AdEvent.model_validate(orjson.loads(sent.value))
    assert (sent.partition, sent.key) == (3, b"u9")
    assert (event.kind, event.price, event.bid_price, event.audit) == (NoticeKind.BILLING, 1.75, 2.5, False)
    async with gw.session.get(url) as resp:  # the exchange retries
        assert resp.status == 200 and await resp.text() == "duplicate"
    assert len(gw.bus.on("ad-events")) == 1
    async with gw.session.post(notice_url(gw, NoticeKind.WIN, t, price="1.75")) as resp:  # POST too
        assert resp.status == 200
    assert counter(gw, "marketing_scorer_gateway_notices_total", kind="billing", outcome="duplicate") == 1


async def test_unsigned_unknown_key_and_tampered_notices_are_403(gw: Gateway) -> None:
    t = ticket()
    good = notice_url(gw, NoticeKind.BILLING, t, price="1")
    tampered = good.replace("bp=2.5000", "bp=9.5000")
    unknown = good.replace("kid=dev", "kid=other")
    unsigned = gw.url + f"{SETTINGS.gateway_notice_path}/billing?b=x&price=1"
    as_win = good.replace("/billing?", "/win?")  # a billing URL replayed as a win
    for url in (tampered, unknown, unsigned, as_win):
        async with gw.session.get(url) as resp:
            assert resp.status == 403, url
    assert gw.bus.on("ad-events") == []
    for reason in ("bad_signature", "unknown_key", "unsigned"):
        assert counter(gw, "marketing_scorer_gateway_notices_total", kind="billing", outcome=reason) >= 1


async def test_a_clearing_price_above_our_bid_is_400_and_audit_is_marked(gw: Gateway) -> None:
    t = ticket(price=2.5)
    async with gw.session.get(notice_url(gw, NoticeKind.BILLING, t, price="2.6")) as resp:
        assert resp.status == 400
    async with gw.session.get(notice_url(gw, NoticeKind.BILLING, t, price="abc")) as resp:
        assert resp.status == 400
    assert gw.bus.on("ad-events") == []
    async with gw.session.get(notice_url(gw, NoticeKind.BILLING, t, price="AUDIT")) as resp:
        assert resp.status == 200
    [sent] = gw.bus.on("ad-events")
    event = AdEvent.model_validate(orjson.loads(sent.value))
    assert event.audit and event.price is None


async def test_a_notice_kafka_refuses_is_503_and_its_retry_goes_through(gw: Gateway) -> None:
    t = ticket()
    url = notice_url(gw, NoticeKind.LOSS, t, loss="102")
    gw.bus.refuse.add(SETTINGS.topics.ad_events)
    async with gw.session.get(url) as resp:
        assert resp.status == 503
    gw.bus.refuse.clear()
    async with gw.session.get(url) as resp:
        assert resp.status == 200 and await resp.text() == "accepted"
    [sent] = gw.bus.on("ad-events")
    assert AdEvent.model_validate(orjson.loads(sent.value)).loss == 102
    # an unreadable loss code is malformed on a loss notice, and ignored on a billing one
    async with gw.session.get(notice_url(gw, NoticeKind.LOSS, ticket(user="u2"), loss="x")) as resp:
        assert resp.status == 400
    async with gw.session.get(notice_url(gw, NoticeKind.BILLING, t, price="1", loss="x")) as resp:
        assert resp.status == 200


def test_the_loss_url_of_a_bid_verifies_as_signed() -> None:
    """The release path reads the ticket back from the lurl the worker signed."""
    t = ticket()
    query = dict(parse_qsl(urlsplit(SIGNER.url(BASE, NoticeKind.LOSS, t)).query))
    assert SIGNER.verify(NoticeKind.LOSS, query) == t


# --- start-up --------------------------------------------------------------------------------------


def test_the_development_notice_key_is_refused_beyond_loopback() -> None:
    server.check_safe(Settings(gateway_host="127.0.0.1"))
    server.check_safe(Settings(gateway_host="::1"))
    with pytest.raises(ConfigError, match="development notice key"):
        server.check_safe(Settings(gateway_host="0.0.0.0"))
    strong = {"k2": "a-real-secret-of-more-than-16-bytes"}
    server.check_safe(Settings(gateway_host="0.0.0.0", notice_keys=strong, notice_key_id="k2"))


def test_accept_encoding() -> None:
    assert server.accepts_gzip("gzip, deflate, br")
    assert server.accepts_gzip("br;q=1.0, gzip;q=0.8")
    assert server.accepts_gzip("*")
    assert not server.accepts_gzip("gzip;q=0")
    assert not server.accepts_gzip("deflate")
    assert not server.accepts_gzip("")
