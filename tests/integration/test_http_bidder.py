"""The OpenRTB HTTP bidder on the real stack: a gateway process in front of a real worker, over
real Kafka and Triton. What the exchange gets over HTTP is checked against what Kafka holds
(ad-bids, bid-requests.dlq), and deadlines against the test's own clock."""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from producers.kafka import produce
from stack.local import STATE_DIR, GatewayProcess, LocalStack, WorkerProcess
from stack.observe import TopicReader, wait_assigned, wait_caught_up
from streams.dlq import HEADER_REASON
from streams.schemas import BidResponse
from streams.schemas.adevents import AdOutcome, OutcomeKind
from streams.schemas.bids import NoBidReason
from streams.settings import Settings
from tests.integration.test_decisions_e2e import STAPLES, click

pytestmark = pytest.mark.integration

CATCH_UP_S = 120.0


def used(settings: Settings) -> list[str]:
    """The inputs these tests write to: the worker must own their partitions before they start."""
    return [settings.topics.clickstream, settings.topics.bid_requests]


@dataclass
class HttpBidder:
    settings: Settings
    gateway: GatewayProcess
    worker: WorkerProcess

    def alive(self) -> None:
        for proc in (self.gateway, self.worker):
            if not proc.running():
                raise AssertionError(f"{type(proc).__name__} exited during the test; its log:\n{proc.log()}")

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.gateway.port, timeout=10)

    def logs(self) -> str:
        return f"--- gateway ---\n{self.gateway.log()}\n--- worker ---\n{self.worker.log()}"


@contextmanager
def running_bidder(local_stack: LocalStack, **overrides: Any) -> Iterator[HttpBidder]:
    """A gateway and a worker on topics of their own; the worker signs notice URLs for the gateway."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings = local_stack.settings(
        topic_prefix=prefix, batch_within_s=0.02, gateway_port=0, kafka_session_timeout_s=6.0, **overrides
    )
    local_stack.create_topics(settings)
    logs = STATE_DIR / "test-workers"
    gateway = GatewayProcess(settings, logs / f"{prefix}gateway.log")
    gateway.start()
    worker = WorkerProcess(gateway.worker_settings(), logs / f"{prefix}worker.log")
    worker.start()
    bidder = HttpBidder(settings, gateway, worker)
    try:
        wait_assigned(settings, used(settings), timeout=60, alive=bidder.alive)
        yield bidder
    except BaseException:
        print(bidder.logs())
        raise
    finally:
        worker.stop()
        gateway.stop()


@pytest.fixture
def bidder(local_stack: LocalStack) -> Iterator[HttpBidder]:
    with running_bidder(local_stack) as running:
        yield running


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    elapsed_ms: float

    def response(self) -> BidResponse:
        return BidResponse.model_validate(orjson.loads(self.body))


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> Reply:
    started = time.monotonic()
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    elapsed = (time.monotonic() - started) * 1000
    return Reply(resp.status, data, {k.lower(): v for k, v in resp.getheaders()}, elapsed)


def bid_request(request_id: str, user: str, tmax: int, floor: float = 0.01) -> dict[str, Any]:
    return {
        "id": request_id,
        "imp": [{"id": "1", "bidfloor": floor, "bidfloorcur": "USD", "banner": {"w": 300, "h": 250}}],
        "site": {"id": "site-42", "domain": "recipes.example"},
        "user": {"id": user},
        "at": 1,
        "cur": ["USD"],
        "tmax": tmax,
    }


def read_until(settings: Settings, topic: str, want: int, timeout: float = 30.0) -> list[Any]:
    """The topic's records once it holds at least `want` (bounded wait)."""
    deadline = time.monotonic() + timeout
    with TopicReader(settings, [topic]) as reader:
        while len(reader.records) < want:
            reader.poll(0.5)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{topic}: {len(reader.records)} records after {timeout:.0f}s, expected {want}"
                )
        return list(reader.read_to_end())


def give_history(bidder: HttpBidder, user: str) -> None:
    t0 = datetime.now(UTC) - timedelta(days=2)
    clicks = [
        click(user, kind, t0 + timedelta(minutes=i), product_id=pid, category="produce", price=2.0)
        for i, pid in enumerate(STAPLES)
        for kind in ("product_view", "add_to_cart", "purchase")
    ]
    assert produce(bidder.settings, clicks).failed == 0
    wait_caught_up(
        bidder.settings, [bidder.settings.topics.clickstream], timeout=CATCH_UP_S, alive=bidder.alive
    )


def test_every_http_answer_is_the_one_on_ad_bids(bidder: HttpBidder) -> None:
    settings, topics = bidder.settings, bidder.settings.topics
    path = settings.gateway_bid_path
    give_history(bidder, "u-http")
    conn = bidder.connect()  # one keep-alive connection for all of them
    won = post(conn, path, orjson.dumps(bid_request("r-bid", "u-http", tmax=3000)))
    assert won.status == 200, (won, bidder.logs())
    assert won.headers["x-openrtb-version"] == "2.6"
    assert won.response().seatbid and won.response().id == "r-bid"
    unknown = post(conn, path, orjson.dumps(bid_request("r-nobid", "u-unknown", tmax=3000)))
    assert (unknown.status, unknown.body) == (204, b"")  # no history: the worker's no-bid
    # tmax 12 less the 10 ms allowance: 2 ms, less than any trip through Kafka and the worker
    late = post(conn, path, orjson.dumps(bid_request("r-late", "u-late", tmax=12)))
    assert late.status == 204
    assert late.elapsed_ms < 12, f"the tmax-12 request was answered after {late.elapsed_ms:.1f} ms"
    raw = orjson.dumps({"id": "r-bad", "imp": "none", "user": {"id": "u-http"}})
    bad = post(conn, path, raw)
    assert bad.status == 400
    assert (bad.response().id, bad.response().nbr) == ("r-bad", NoBidReason.INVALID_REQUEST)
    conn.close()

    [dead] = read_until(settings, topics.dlq(topics.bid_requests), 1)
    assert dead.value == raw and dead.headers[HEADER_REASON] == b"schema_invalid"
    recorded = read_until(settings, topics.ad_bids, 4)
    answers = {BidResponse.model_validate(orjson.loads(r.value)).id: r.value for r in recorded}
    assert sorted(answers) == ["r-bad", "r-bid", "r-late", "r-nobid"] and len(recorded) == 4
    assert answers["r-bid"] == won.body  # exactly what the exchange got
    assert answers["r-bad"] == bad.body
    nobid = BidResponse.model_validate(orjson.loads(answers["r-nobid"]))
    assert nobid.nbr == NoBidReason.UNMATCHED_USER
    expired = BidResponse.model_validate(orjson.loads(answers["r-late"]))
    assert expired.nbr == NoBidReason.INSUFFICIENT_AUCTION_TIME


def notice(bidder: HttpBidder, url: str, **macros: str) -> int:
    """GET a notice URL as the exchange would: its macros substituted."""
    names = {"price": "${AUCTION_PRICE}", "loss": "${AUCTION_LOSS}"}
    for name, value in macros.items():
        url = url.replace(names[name], value)
    assert url.startswith(bidder.gateway.notice_base_url), url
    conn = bidder.connect()
    try:
        conn.request("GET", url.removeprefix(bidder.gateway.url))
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def outcomes_for(
    bidder: HttpBidder, bid_id: str, kinds: set[OutcomeKind], timeout: float = 60.0
) -> list[AdOutcome]:
    """The worker's outcomes for `bid_id` once one of each of `kinds` is on ad-outcomes."""
    deadline = time.monotonic() + timeout
    with TopicReader(bidder.settings, [bidder.settings.topics.ad_outcomes]) as reader:
        while True:
            reader.poll(0.5)
            found = [AdOutcome.model_validate(orjson.loads(r.value)) for r in reader.records]
            mine = [o for o in found if o.bid_id == bid_id]
            if kinds <= {o.kind for o in mine}:
                reader.read_to_end()
                found = [AdOutcome.model_validate(orjson.loads(r.value)) for r in reader.records]
                return [o for o in found if o.bid_id == bid_id]
            bidder.alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"outcomes of {bid_id} after {timeout:.0f}s: {mine}\n{bidder.logs()}")


def won_bid(bidder: HttpBidder, user: str, request_id: str) -> Any:
    give_history(bidder, user)
    conn = bidder.connect()
    reply = post(
        conn, bidder.settings.gateway_bid_path, orjson.dumps(bid_request(request_id, user, tmax=3000))
    )
    conn.close()
    assert reply.status == 200, (reply, bidder.logs())
    [seat] = reply.response().seatbid
    [bid] = seat.bid
    return bid


def test_a_won_auction_is_charged_its_clearing_price_once(bidder: HttpBidder) -> None:
    bid = won_bid(bidder, "u-win", "r-win")
    clearing = round(bid.price * 0.6, 4)  # a second-price auction clears below our bid
    assert notice(bidder, bid.nurl, price=f"{clearing:.4f}") == 200
    assert notice(bidder, bid.burl, price=f"{clearing:.4f}") == 200
    assert notice(bidder, bid.burl, price=f"{clearing:.4f}") == 200  # the exchange retries: a replay
    # a fresh gateway (its replay memory empty) forwards the replay: the worker must drop it
    bidder.gateway.stop()
    bidder.gateway.start()
    assert notice(bidder, bid.burl, price=f"{clearing:.4f}") == 200
    outcomes = outcomes_for(bidder, bid.id, {OutcomeKind.WON, OutcomeKind.BILLED})
    billed = [o for o in outcomes if o.kind is OutcomeKind.BILLED]
    assert len(billed) == 1, outcomes
    # CPM -> one impression in micros: price / 1000 x 1e6
    assert billed[0].charged_micros == round(clearing * 1000)
    assert billed[0].released_micros == round(bid.price * 1000)  # the reservation held at our bid
    assert billed[0].clearing_price == pytest.approx(clearing)
    assert sum(o.charged_micros for o in outcomes) == round(clearing * 1000)


def test_a_lost_auction_releases_its_reservation(bidder: HttpBidder) -> None:
    bid = won_bid(bidder, "u-lost", "r-lost")
    assert notice(bidder, bid.lurl, loss="102") == 200  # lost to a higher bid
    [lost] = outcomes_for(bidder, bid.id, {OutcomeKind.LOST})
    assert (lost.loss, lost.charged_micros) == (102, 0)
    assert lost.released_micros == round(bid.price * 1000)


def test_a_worker_killed_mid_traffic_leaves_no_request_unanswered_past_its_deadline(
    local_stack: LocalStack,
) -> None:
    """Requests keep coming while the only worker is SIGKILLed and restarted: each still gets an
    answer (a no-bid while no worker owns its partition) before its tmax. A bid won before the
    kill and billed while no worker runs is charged once by the restarted one: its reservation
    and the notice, both in Kafka, outlive the worker.

    The allowance is 30 ms here, not the default 10: on this 2-core machine a restarting worker
    takes both cores for seconds, and with 10 ms 2 of 159 no-bids reached the client 0.7 and 15 ms
    after tmax (the answer was sent on time; the client's thread and the gateway's loop waited
    for a core). The allowance is the setting for that: the way back to the exchange."""
    with running_bidder(local_stack, gateway_network_allowance_ms=30.0) as bidder:
        killed_worker_traffic(bidder, tmax=150, allowance=30)


def killed_worker_traffic(bidder: HttpBidder, *, tmax: int, allowance: int) -> None:
    path = bidder.settings.gateway_bid_path
    bid = won_bid(bidder, "u-kill", "r-kill")
    clearing = round(bid.price * 0.5, 4)
    assert notice(bidder, bid.nurl, price=f"{clearing:.4f}") == 200
    replies: list[Reply] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = bidder.connect()
        i = 0
        try:
            while not stop.is_set():
                reply = post(conn, path, orjson.dumps(bid_request(f"k{n}-{i}", f"u{i % 13}", tmax=tmax)))
                with lock:
                    replies.append(reply)
                i += 1
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(replies) >= 50, timeout=30, what="50 answers before the kill")
        bidder.worker.kill()
        killed_at = len(replies)
        wait_for(lambda: len(replies) >= killed_at + 50, timeout=30, what="50 answers without a worker")
        without_worker = replies[killed_at + 8 : killed_at + 50]  # past those already answered at the kill
        assert notice(bidder, bid.burl, price=f"{clearing:.4f}") == 200  # Kafka took it: no worker needed
        restarted = len(replies)
        bidder.worker.start()
        # the restarted worker answers again once the dead one's session expired (6 s)
        wait_for(
            lambda: any(r.elapsed_ms < tmax - allowance - 20 for r in replies[restarted:]),
            timeout=90,
            what="the restarted worker's answers",
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors, errors
    statuses = {r.status for r in replies}
    assert statuses <= {200, 204}, statuses
    # with no worker, the gateway's deadline answered: a no-bid at tmax less the allowance
    assert {r.status for r in without_worker} == {204}
    assert min(r.elapsed_ms for r in without_worker) >= tmax - allowance - 1
    slow = [r.elapsed_ms for r in replies if r.elapsed_ms >= tmax]
    assert not slow, f"{len(slow)} of {len(replies)} answers came after tmax {tmax} ms: {sorted(slow)[-5:]}"
    billed = [o for o in outcomes_for(bidder, bid.id, {OutcomeKind.BILLED}) if o.kind is OutcomeKind.BILLED]
    assert {o.outcome_id for o in billed} == {f"billed:{bid.id}"}  # a replay after the crash keeps its id
    assert {o.charged_micros for o in billed} == {round(clearing * 1000)}


def wait_for(check: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        threading.Event().wait(0.05)
