"""The worker's half of the HTTP gateway's request/reply: a bid request carrying the gateway's
headers (`streams.replyto`) is answered on bid-replies with those headers, its deadline is the
gateway's, and one the gateway already answered (400) is dead-lettered without a second answer.
Requests without the headers are answered on ad-bids as before."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson

from streams.campaigns import CampaignBook
from streams.dlq import DeadLetter, RecordMeta
from streams.handlers.bids import handle_bids
from streams.handlers.common import Output, Record
from streams.pipeline import process
from streams.publisher import Publisher
from streams.replyto import HEADER_ANSWERED, HEADER_CORRELATION, HEADER_DEADLINE_MS, HEADER_GATEWAY
from streams.schemas import BidRequest, BidResponse
from streams.schemas.bids import NoBidReason
from streams.serde import decode
from tests.unit.test_bidder import MIDDAY, Bidder, campaign, ms, request
from tests.unit.test_handlers import make_ctx
from tests.unit.test_invalid_bids import bid_route

BOOK = CampaignBook(campaigns=[campaign("avocado", [47209])], currency="USD")
GATEWAY = [(HEADER_GATEWAY, b"gw-1"), (HEADER_CORRELATION, b"42")]


def gateway_record(bidder: Bidder, body: dict[str, Any], headers: list[tuple[str, bytes]]) -> Record:
    raw = orjson.dumps(body)
    meta = RecordMeta("bid-requests", 0, bidder.offset, b"u1", headers, ms(MIDDAY))
    bidder.offset += 1
    return Record(meta, raw, decode(raw, BidRequest, max_bytes=65536))


async def test_a_gateway_request_is_answered_on_bid_replies_with_its_headers() -> None:
    bidder = Bidder(BOOK)
    bidder.know("u1")
    deadline = [(HEADER_DEADLINE_MS, str(ms(MIDDAY) + 100).encode())]
    plain = bidder.record(request("u1"), ts_ms=ms(MIDDAY))
    routed = gateway_record(bidder, request("u2"), GATEWAY + deadline)
    out = await handle_bids([plain, routed], bidder.ctx, bidder.book, bidder.state)
    assert [(o.topic, o.headers) for o in out if isinstance(o, Output)] == [
        ("ad-bids", None),
        ("bid-replies", GATEWAY),  # the correlation copied, the deadline not
    ]


async def test_the_deadline_header_wins_over_tmax_from_the_kafka_timestamp() -> None:
    bidder = Bidder(BOOK)
    bidder.know("u1")
    # tmax from the record's timestamp leaves 1 s, but the gateway's deadline is 4 ms away:
    # less than the 5 ms the worker keeps for the way back
    spent = [(HEADER_DEADLINE_MS, str(ms(MIDDAY) + 4).encode())]
    record = gateway_record(bidder, request("u1", tmax=1000), GATEWAY + spent)
    [out] = await handle_bids([record], bidder.ctx, bidder.book, bidder.state)
    assert isinstance(out, Output)
    answer = BidResponse.model_validate(orjson.loads(out.value))
    assert answer.nbr == NoBidReason.INSUFFICIENT_AUCTION_TIME
    roomy = [(HEADER_DEADLINE_MS, str(ms(MIDDAY) + 50).encode())]
    record = gateway_record(bidder, request("u1", tmax=1), GATEWAY + roomy)
    [out] = await handle_bids([record], bidder.ctx, bidder.book, bidder.state)
    assert isinstance(out, Output) and BidResponse.model_validate(orjson.loads(out.value)).seatbid


async def test_an_invalid_gateway_request_is_answered_on_bid_replies_unless_already_answered() -> None:
    raw = orjson.dumps({"id": "req-7", "imp": "none", "user": {"id": "u3"}})
    routed = RecordMeta("bid-requests", 2, 5, b"u3", GATEWAY)
    answered = RecordMeta("bid-requests", 2, 6, b"u3", [*GATEWAY, (HEADER_ANSWERED, b"400")])
    out = await process([(routed, raw), (answered, raw)], bid_route(), make_ctx())
    dead = [o for o in out if isinstance(o, DeadLetter)]
    answers = [o for o in out if isinstance(o, Output)]
    assert [d.value for d in dead] == [raw, raw]  # both dead-lettered with their bytes
    [answer] = answers  # only the one the gateway did not answer itself
    assert (answer.topic, answer.key, answer.headers) == ("bid-replies", "u3", GATEWAY)
    assert BidResponse.model_validate(orjson.loads(answer.value)).nbr == NoBidReason.INVALID_REQUEST


class HeaderSink:
    def __init__(self) -> None:
        self.headers: list[Any] = []

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, headers: Any = None) -> Any:
        self.headers.append(headers)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_publisher_sends_an_outputs_headers() -> None:
    sink = HeaderSink()
    await Publisher({"t": sink}, Counter()).publish([Output("t", "a", b"1", GATEWAY), Output("t", "b", b"2")])
    assert sorted(sink.headers, key=lambda h: h is None) == [GATEWAY, None]
