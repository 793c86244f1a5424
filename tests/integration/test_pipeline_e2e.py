"""End to end through real Kafka, real Triton and a real worker process: every input record ends
as exactly the expected output or dead letter, with the right keys and schemas."""

from __future__ import annotations

import time
from collections import defaultdict

import orjson
import pytest

from producers.events import EventFactory, Produced, bad_records, request_id_of
from producers.kafka import produce
from stack.observe import TopicReader, wait_caught_up
from streams.dlq import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from streams.profile import Profile
from streams.schemas import (
    BidRequest,
    BidResponse,
    ChatMessage,
    ClickEvent,
    CsReply,
    SegmentUpdate,
)
from streams.segments import evaluate
from streams.serde import decode
from tests.integration.conftest import Scorer
from tests.integration.oracle import banner_bid, recommend
from tests.unit.test_serde import EXPECTED_REASON

pytestmark = pytest.mark.integration

CATCH_UP_S = 120.0


def expected_segment_versions(clicks: list[Produced], keep: int) -> dict[str, int]:
    """The pure segment logic replayed over the clickstream alone: how many updates each user gets."""
    profiles: dict[str, Profile] = defaultdict(Profile)
    for rec in clicks:
        event = decode(rec.value, ClickEvent, max_bytes=65536)
        p = profiles[event.user_id]
        p.apply_click(event, keep_items=keep)
        change = evaluate(p, event.ts)
        if change:
            p.segments, p.version = change.segments, p.version + 1
    return {u: p.version for u, p in profiles.items() if p.version}


def test_every_input_gets_its_output_or_dead_letter(scorer: Scorer) -> None:
    settings, topics = scorer.settings, scorer.settings.topics
    factory = EventFactory(seed=21)
    clicks = factory.session("1001", [196, 14084, 12427]) + factory.session("1002", [26088, 26405])
    chats = [
        factory.chat(user_id="u1001", text=t)
        for t in ("Hello", "Where is my order 123?", "I want a refund, this is the worst!!!")
    ]
    posts = [
        factory.social(user_id="s1", text=t, brand="freshcart") for t in ("love it", "meh", "never again")
    ]
    bids = [
        factory.bid_request(user_id="u1001", tmax=2000),  # has history: a bid
        factory.bid_request(user_id="u-never-seen", tmax=2000),  # no history: nbr 8
        factory.bid_request(user_id="u1002", tmax=None),  # no deadline
    ]
    bad = [r for t in ("clickstream", "chat", "social", "bid-requests") for r in bad_records(t)]
    # Clicks first, so the bid requests find the users' histories already in the profile table.
    report = produce(settings, clicks)
    assert report.failed == 0, report.summary()
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)
    report = produce(settings, chats + posts + bids + bad)
    assert report.failed == 0, report.summary()
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)

    with TopicReader(settings, [*topics.outputs, *topics.dead_letters]) as reader:
        reader.read_to_end()
    scorer.alive()  # the bad records did not take the worker down

    # cs-replies: one per chat message, keyed by conversation, answering that message
    replies = reader.by_topic(topics.cs_replies)
    sent_chats = [decode(c.value, ChatMessage, max_bytes=65536) for c in chats]
    assert len(replies) == len(chats)
    parsed = [CsReply.model_validate(orjson.loads(r.value or b"")) for r in replies]
    assert sorted(p.in_reply_to for p in parsed) == sorted(m.message_id for m in sent_chats)
    assert {r.key for r in replies} == {m.conversation_id.encode() for m in sent_chats}
    for p in parsed:
        assert p.action in ("reply", "handoff") and (p.reply_text or p.handoff_queue)
        assert "worst" not in (p.reply_text or "")

    # ad-bids: one response per request, id = request id; a bad request that names a string id
    # (a JSON object, say with an unknown schema_version) gets nbr 2 beside its dead letter
    responses = {
        BidResponse.model_validate(orjson.loads(r.value or b"")).id: r
        for r in reader.by_topic(topics.ad_bids)
    }
    requests = [decode(b.value, BidRequest, max_bytes=65536) for b in bids]
    invalid = [request_id_of(r.value) for r in bad if r.topic == "bid-requests"]
    invalid_ids = {i for i in invalid if i is not None}
    assert invalid_ids, "the bad bid requests should include one that names its id"
    assert set(responses) == {r.id for r in requests} | invalid_ids
    assert len(reader.by_topic(topics.ad_bids)) == len(bids) + len(invalid_ids)
    for request_id in invalid_ids:
        nbr2 = BidResponse.model_validate(orjson.loads(responses[request_id].value or b""))
        assert nbr2.nbr == 2 and not nbr2.seatbid, nbr2
    answer = {
        r.user.id: BidResponse.model_validate(orjson.loads(responses[r.id].value or b"")) for r in requests
    }  # type: ignore[union-attr]
    assert answer["u-never-seen"].nbr == 8 and not answer["u-never-seen"].seatbid
    # the users with a history: the campaign and price the formula gives (tests/integration/oracle.py)
    last_segments = {
        u["user_id"]: u["segments"]
        for u in (orjson.loads(r.value or b"") for r in reader.by_topic(topics.segment_updates))
    }
    for user in ("u1001", "u1002"):
        history = [
            e["product_id"]
            for e in (orjson.loads(c.value) for c in clicks)
            if e["user_id"] == user and e["type"] in ("product_view", "add_to_cart", "purchase")
        ]
        items, scores = recommend(settings.triton_grpc_url, history, settings.recent_items)
        want = banner_bid(items, scores, last_segments.get(user, []), w=300, h=250, floor=0.05)
        got = answer[user]
        if want is None:
            assert got.nbr == 501 and not got.seatbid, (user, got.ext)
        else:
            assert got.seatbid and got.nbr is None, (user, got.ext)
            [bid] = got.seatbid[0].bid
            assert (bid.cid, bid.price) == (want.campaign, pytest.approx(want.price, abs=1e-9)), (user, want)

    # segment-updates: exactly the changes the pure logic predicts for clickstream users,
    # versions 1..n per user; social-only users get consecutive versions too
    updates = [
        SegmentUpdate.model_validate(orjson.loads(r.value or b""))
        for r in reader.by_topic(topics.segment_updates)
    ]
    by_user: dict[str, list[int]] = defaultdict(list)
    for u in updates:
        by_user[u.user_id].append(u.version)
    for user, versions in by_user.items():
        assert versions == list(range(1, len(versions) + 1)), (user, versions)
    for rec in reader.by_topic(topics.segment_updates):
        assert rec.key == orjson.loads(rec.value or b"")["user_id"].encode()
    predicted = expected_segment_versions(clicks, settings.recent_items)
    # u1001 also chatted, which does not touch segments in this version; s1 only posted
    assert {u: max(v) for u, v in by_user.items() if u in predicted} == predicted
    assert set(by_user) <= set(predicted) | {"s1"}
    assert all(u.recommendations for u in updates if u.user_id in predicted)

    # dead letters: every bad record, byte for byte, with its reason, in its topic's DLQ, naming
    # the partition and offset the bad record was written at (read back from the input topic)
    with TopicReader(settings, topics.inputs) as inputs:
        inputs.read_to_end()
    for base in ("clickstream", "chat", "social", "bid-requests"):
        sent_bad = [r for r in bad if r.topic == base]
        dead = reader.by_topic(topics.dlq(topics.name(base)))
        expected = []
        for r in sent_bad:
            reason = EXPECTED_REASON[r.kind]
            expected.append((r.value, reason.value if reason else "oversized"))
        assert sorted((d.value, d.headers[HEADER_REASON].decode()) for d in dead) == sorted(expected), base
        assert all(
            d.headers[HEADER_TOPIC] == topics.name(base).encode() and d.key == b"bad-key" for d in dead
        )
        written = sorted(
            (r.partition, r.offset) for r in inputs.by_topic(topics.name(base)) if r.key == b"bad-key"
        )
        named = sorted((int(d.headers[HEADER_PARTITION]), int(d.headers[HEADER_OFFSET])) for d in dead)
        assert named == written, base


def test_worker_survives_a_burst_of_only_bad_records(scorer: Scorer) -> None:
    settings, topics = scorer.settings, scorer.settings.topics
    bad = [r for _ in range(20) for r in bad_records("chat")]
    good = EventFactory(seed=5).chat(text="hi there")
    start = time.monotonic()
    assert produce(settings, [*bad, good]).failed == 0
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)
    with TopicReader(settings, [topics.cs_replies, topics.dlq(topics.chat)]) as reader:
        reader.read_to_end()
    assert len(reader.by_topic(topics.dlq(topics.chat))) == len(bad)
    assert len(reader.by_topic(topics.cs_replies)) == 1
    assert time.monotonic() - start < CATCH_UP_S
