"""The marketing decisions end to end on the real stack: segments that need time, refunds for
angry customers, expired auctions, and no PII in any topic the worker writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from producers.events import EventFactory, Produced
from producers.kafka import produce
from stack.observe import TopicReader, wait_caught_up
from streams.schemas import BidResponse, CsReply, SegmentUpdate
from tests.integration.conftest import Scorer

pytestmark = pytest.mark.integration

CATCH_UP_S = 120.0
PII = (b"jane.doe@example.com", b"7700 900123", b"4111 1111 1111 1111", b"4111111111111111")


def click(user: str, kind: str, at: datetime, **extra: object) -> Produced:
    body = {
        "schema_version": 1,
        "event_id": f"{user}-{kind}-{at.timestamp()}",
        "user_id": user,
        "session_id": "s1",
        "ts": at.isoformat(),
        "type": kind,
        **extra,
    }
    return Produced("clickstream", user.encode(), orjson.dumps(body))


def run(scorer: Scorer, records: list[Produced]) -> TopicReader:
    settings = scorer.settings
    assert produce(settings, records).failed == 0
    wait_caught_up(settings, settings.topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)
    reader = TopicReader(
        settings, [*settings.topics.outputs, *settings.topics.internal, *settings.topics.dead_letters]
    )
    reader.read_to_end()
    reader.close()
    return reader


def test_cart_abandoner_refund_handoff_expired_bid_and_no_pii(scorer: Scorer) -> None:
    topics = scorer.settings.topics
    t0 = datetime.now(UTC) - timedelta(hours=2)
    factory = EventFactory(seed=31)
    clicks = [
        click("u-cart", "product_view", t0, product_id=196, category="snacks", price=3.5),
        click(
            "u-cart", "add_to_cart", t0 + timedelta(minutes=1), product_id=196, category="snacks", price=3.5
        ),
        click("u-cart", "page_view", t0 + timedelta(minutes=50)),  # the cart sat untouched for 49 min
    ]
    angry = factory.chat(
        user_id="u-cart",
        text="I returned the blender THREE weeks ago and still no refund!!! This is a disgrace, I want my money back now",
    )
    pii = factory.chat(
        user_id="u-cart",
        text="my email is jane.doe@example.com, phone +44 7700 900123, card 4111 1111 1111 1111 - where is my refund?",
    )
    pii_bad = Produced(
        "chat", b"c-x", b'{"schema_version": 1, "text": "call +44 7700 900123 jane.doe@example.com"}'
    )
    expired = factory.bid_request(user_id="u-cart", tmax=1)  # 1 ms: gone before any worker could score it
    reader = run(scorer, [*clicks, angry, pii, pii_bad, expired])

    updates = [
        SegmentUpdate.model_validate(orjson.loads(r.value or b""))
        for r in reader.by_topic(topics.segment_updates)
    ]
    assert [(u.entered, u.exited) for u in updates if u.user_id == "u-cart"][-1] == (
        ["cart_abandoner"],
        ["high_intent"],
    )

    replies = {
        r.in_reply_to: r
        for r in (
            CsReply.model_validate(orjson.loads(x.value or b"")) for x in reader.by_topic(topics.cs_replies)
        )
    }
    answer = replies[orjson.loads(angry.value)["message_id"]]
    assert answer.action == "handoff" or answer.intent == "return_refund", answer

    [bid] = [
        BidResponse.model_validate(orjson.loads(r.value or b"")) for r in reader.by_topic(topics.ad_bids)
    ]
    assert bid.nbr == 15 and not bid.seatbid

    written = [r for r in reader.records]
    assert len(reader.by_topic(topics.dlq(topics.chat))) == 1
    for record in written:
        blob = (record.value or b"") + b"".join(record.headers.values()) + (record.key or b"")
        for secret in PII:
            assert secret not in blob, (record.topic, secret)
