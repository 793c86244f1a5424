"""Handlers and the pipeline, driven in memory with fake models (pure logic only)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from producers.events import EventFactory, bad_records
from streams.campaigns import Campaign, CampaignBook, Creative, Product
from streams.dlq import HEADER_OFFSET, HEADER_REASON, HEADER_TOPIC, DeadLetter, RecordMeta
from streams.handlers.bids import handle_bids
from streams.handlers.chat import handle_chat
from streams.handlers.common import Context, Output, Record
from streams.handlers.segments import handle_clicks, handle_social
from streams.pipeline import Route, process
from streams.replies import Catalogue, Reply, ReplyIndex
from streams.schemas import (
    BidRequest,
    BidResponse,
    ChatMessage,
    ClickEvent,
    CsReply,
    ScoredPost,
    SegmentUpdate,
    SocialPost,
)
from streams.serde import decode
from streams.settings import Settings
from tests.fakes import LABELS, FakeModels

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BOOK = CampaignBook(
    campaigns=[
        Campaign(
            id="c1",
            adomain=["shop.example"],
            products=[Product(id=100, name="first"), Product(id=101, name="second")],
            value_per_conversion=0.05,
            shade=0.8,
            max_cpm=6.0,
            daily_budget=1000.0,
            creatives=[Creative(crid="cr1", format="banner", w=300, h=250)],
        )
    ]
)


CATALOGUE = Catalogue(
    replies=[
        Reply(id="greet", intent="greeting", text="Hello! How can we help?"),
        Reply(id="where", intent="order_status", text="Your order is on its way."),
        Reply(id="sorry", intent="complaint", text="We are sorry.", escalate="if_negative"),
    ]
)


def make_ctx(models: FakeModels | None = None) -> Context:
    return Context(
        settings=Settings(),
        models=models or FakeModels(),
        profiles={},
        replies=ReplyIndex(CATALOGUE),
        now=lambda: NOW,
    )


def records(items: list, model: type, topic: str, ts_ms: int | None = None) -> list[Record]:
    out = []
    for offset, raw in enumerate(items):
        meta = RecordMeta(topic=topic, partition=0, offset=offset, key=b"k", timestamp_ms=ts_ms)
        out.append(Record(meta, raw, decode(raw, model, max_bytes=65536)))
    return out


TOPIC_OF = {
    CsReply: "cs-replies",
    SegmentUpdate: "segment-updates",
    BidResponse: "ad-bids",
    ScoredPost: "social-scored",
}


def outputs_of(outcomes: list, model: type) -> list:
    return [
        model.model_validate(orjson.loads(o.value))
        for o in outcomes
        if isinstance(o, Output) and o.topic == TOPIC_OF[model]
    ]


async def test_chat_replies_once_per_message_and_never_echoes_text() -> None:
    factory = EventFactory(seed=3)
    msgs = [factory.chat(text=t).value for t in ("Hello", "where is my order??", "This is the worst!!!")]
    labels = LABELS
    models = FakeModels(
        intents={
            "Hello": labels.intents.index("greeting"),
            "where is my order??": labels.intents.index("order_status"),
            "This is the worst!!!": labels.intents.index("complaint"),
        }
    )
    ctx = make_ctx(models)
    outcomes = await handle_chat(records(msgs, ChatMessage, "chat"), ctx)
    replies = outputs_of(outcomes, CsReply)
    assert [r.intent for r in replies] == ["greeting", "order_status", "complaint"]
    assert replies[0].action == "reply" and replies[0].reply_text
    assert replies[2].action == "handoff" and replies[2].handoff_queue == "priority"  # angry customer
    assert models.text_calls == [3, 3]  # the catalogue once (first use), then one batched call per batch
    await handle_chat(records(msgs, ChatMessage, "chat"), ctx)
    assert models.text_calls == [3, 3, 3]
    assert all("worst" not in o.value.decode() for o in outcomes)
    assert [r.reply_id for r in replies] == [f"reply:chat/0/{i}" for i in range(3)]


async def test_chat_replies_use_the_users_profile_as_context() -> None:
    factory = EventFactory(seed=3)
    texts = ("hi again", "what is happening with order 55123", "meh, this is not great")
    msgs = [factory.chat(text=t, user_id="u7").value for t in texts]
    labels = LABELS
    models = FakeModels(
        intents={
            t: labels.intents.index(i)
            for t, i in zip(texts, ("greeting", "order_status", "complaint"), strict=True)
        }
    )
    models.p_positive = {"meh, this is not great": 0.2}
    ctx = make_ctx(models)
    ctx.profiles["u7"] = {"last_purchase": "2026-11-20T09:00:00+00:00", "segments": ["churn_risk"]}
    replies = outputs_of(await handle_chat(records(msgs, ChatMessage, "chat"), ctx), CsReply)
    assert all(r.customer_segments == ["churn_risk"] for r in replies)
    greeting, status, unhappy = replies
    assert "context:last_order_date,segments" in greeting.reasons
    assert "context:last_order_date,order_id,segments" in status.reasons
    assert "{" not in (greeting.reply_text or "") + (status.reply_text or "")  # placeholders filled
    assert (unhappy.action, unhappy.handoff_queue) == ("handoff", "retention")


async def test_segments_emit_only_on_change_with_increasing_versions() -> None:
    factory = EventFactory(seed=4)
    session = factory.session("42", [11, 12])
    ctx = make_ctx()
    outcomes = await handle_clicks(records([r.value for r in session], ClickEvent, "clickstream"), ctx)
    updates = outputs_of(outcomes, SegmentUpdate)
    assert [u.version for u in updates] == list(range(1, len(updates) + 1))
    assert updates[0].entered == ["new_visitor"]
    assert any("high_intent" in u.entered for u in updates)
    assert all(u.user_id == "u42" for u in updates)
    assert len(updates) < len(session)  # not every event changes a segment
    assert updates[0].recommendations and updates[0].recommendations[0].product_id == 100
    # replaying the same events on the resulting state changes nothing new about new_visitor
    assert ctx.profiles["u42"]["version"] == len(updates)


async def test_segment_updates_do_not_depend_on_batching() -> None:
    factory = EventFactory(seed=5)
    events = [r.value for r in factory.session("7", [1, 2, 3])] + [r.value for r in factory.session("7", [4])]
    whole = await handle_clicks(records(events, ClickEvent, "clickstream"), make_ctx())
    ctx = make_ctx()
    split = []
    for rec in records(events, ClickEvent, "clickstream"):
        split += await handle_clicks([rec], ctx)

    def strip(outs):
        return [(u.version, u.segments, u.entered, u.exited) for u in outputs_of(outs, SegmentUpdate)]

    assert strip(whole) == strip(split)


async def test_social_sentiment_moves_user_into_advocate_and_detractor() -> None:
    factory = EventFactory(seed=6)
    ctx = make_ctx()
    loves = [factory.social(text="I love it", user_id="u9", brand="acme").value for _ in range(3)]
    hates = [factory.social(text="worst ever!!!", user_id="u9").value for _ in range(6)]
    updates = outputs_of(
        await handle_social(records(loves + hates, SocialPost, "social"), ctx), SegmentUpdate
    )
    # EWMA (alpha 0.3) of the fake's P(positive), 0.9 x3 then 0.05 x6, all posted at once:
    # 0.9, 0.9, 0.9, 0.645, 0.4665, 0.3416, 0.2541, 0.1929, 0.1400. brand_advocate enters at
    # >= 0.75; below its 0.60 exit line (5th post) the hour's dwell keeps the user in, until they
    # enter detractor (<= 0.25, 8th post), which ends it at once. new_visitor ends at the 6th text.
    assert [(u.source.offset, u.version, u.entered, u.exited) for u in updates] == [
        (0, 1, ["brand_advocate", "new_visitor"], []),
        (5, 2, [], ["new_visitor"]),
        (7, 3, ["detractor"], ["brand_advocate"]),
    ]
    assert updates[2].reasons[:2] == ["enter:detractor:sentiment=0.19<=0.25", "exit:brand_advocate"]
    scored = outputs_of(await handle_social(records(loves[:1], SocialPost, "social"), ctx), ScoredPost)
    assert [(s.brand, s.sentiment.value, s.p_positive) for s in scored] == [("acme", "positive", 0.9)]


async def test_bids_follow_the_formula_and_answer_every_request() -> None:
    factory = EventFactory(seed=8)
    ctx = make_ctx()
    ctx.profiles["u1"] = {"recent_items": [5, 6], "version": 1}
    now_ms = int(NOW.timestamp() * 1000)  # the context's clock
    reqs = [
        factory.bid_request(user_id="u1", tmax=500).value,  # known user: bid
        factory.bid_request(user_id="nobody", tmax=500).value,  # unknown: nbr 8
        factory.bid_request(user_id="u1", tmax=500, floor=50.0).value,  # floor above the cap: nbr 501
    ]
    state: dict = {}
    answered = outputs_of(
        await handle_bids(records(reqs, BidRequest, "bid-requests", ts_ms=now_ms), ctx, BOOK, state),
        BidResponse,
    )
    expired = outputs_of(
        await handle_bids(
            records(reqs[:1], BidRequest, "bid-requests", ts_ms=now_ms - 10_000), ctx, BOOK, state
        ),
        BidResponse,
    )
    assert len(answered) == 3
    price = answered[0].seatbid[0].bid[0].price
    # the fake ranks items 100.. with scores 0.02, 0.019, ...: c1's products are the first two
    assert price == pytest.approx(min(6.0, (0.02 + 0.019) * 0.05 * 1000 * 0.8), rel=1e-4)
    assert answered[1].nbr == 8 and not answered[1].seatbid
    assert answered[2].nbr == 501
    assert expired[0].nbr == 15 and expired[0].ext.reasons == ["tmax_expired_before_scoring"]


async def test_pipeline_dead_letters_bad_records_with_original_bytes_and_reason() -> None:
    ctx = make_ctx()
    bad = bad_records("chat", max_text_chars=ctx.settings.max_text_chars)
    good = [EventFactory(seed=9).chat().value]
    batch = [
        (RecordMeta("chat", 1, i, b"key", [("trace", b"t1")]), raw)
        for i, raw in enumerate([r.value for r in bad] + good)
    ]
    route = Route("chat", ChatMessage, handle_chat, text_field="text")
    outcomes = await process(batch, route, ctx)
    dead = [o for o in outcomes if isinstance(o, DeadLetter)]
    assert [d.value for d in dead] == [r.value for r in bad]
    assert all(d.topic == "chat.dlq" and d.key == b"key" for d in dead)
    headers = [dict(d.headers) for d in dead]
    assert [h[HEADER_REASON].decode() for h in headers][-1] == "oversized"
    assert (
        headers[0][HEADER_TOPIC] == b"chat"
        and headers[0][HEADER_OFFSET] == b"0"
        and headers[0]["trace"] == b"t1"
    )
    assert len([o for o in outcomes if isinstance(o, Output)]) == 1


async def test_a_poison_record_is_isolated_from_its_batch() -> None:
    calls: list[int] = []

    async def fragile(recs, ctx):  # type: ignore[no-untyped-def]
        calls.append(len(recs))
        if any(r.value.text == "boom" for r in recs):
            raise ValueError("bug triggered by this record")
        return [Output("out", r.value.conversation_id, b"{}") for r in recs]

    factory = EventFactory(seed=10)
    raws = [factory.chat(text=t).value for t in ("a", "boom", "c")]
    batch = [(RecordMeta("chat", 0, i, None), raw) for i, raw in enumerate(raws)]
    outcomes = await process(batch, Route("chat", ChatMessage, fragile), make_ctx())
    assert calls == [3, 1, 1, 1]
    assert [type(o).__name__ for o in outcomes] == ["Output", "DeadLetter", "Output"]
    assert dict(outcomes[1].headers)[HEADER_REASON] == b"processing_error"  # type: ignore[union-attr]


async def test_server_rejection_costs_only_the_rejected_record() -> None:
    factory = EventFactory(seed=11)
    raws = [factory.chat(text=t).value for t in ("fine", "poison", "also fine")]
    ctx = make_ctx(FakeModels(reject={"poison"}))
    outcomes = await handle_chat(records(raws, ChatMessage, "chat"), ctx)
    [dead] = [o for o in outcomes if isinstance(o, DeadLetter)]
    assert dead.value == raws[1] and dict(dead.headers)[HEADER_REASON] == b"inference_rejected"
    replies = outputs_of(outcomes, CsReply)
    assert [r.source.offset for r in replies] == [0, 2]  # the neighbours were answered


async def test_event_time_skew_is_checked_against_the_context_clock() -> None:
    """The skew limit (1 h) is measured from `ctx.now`, the clock tests control, not the host's."""

    def post(ahead: timedelta) -> bytes:
        ts = (NOW + ahead).isoformat()
        body = {"schema_version": 1, "post_id": "p", "user_id": "u1", "brand": "b", "text": "ok", "ts": ts}
        return orjson.dumps(body)

    route = Route("social", SocialPost, handle_social, text_field="text", time_field="ts")
    batch = [
        (RecordMeta("social", 0, i, b"u1"), post(ahead))
        for i, ahead in enumerate([timedelta(minutes=59), timedelta(minutes=61)])
    ]
    outcomes = await process(batch, route, make_ctx())
    [dead] = [o for o in outcomes if isinstance(o, DeadLetter)]
    assert dict(dead.headers)[HEADER_REASON] == b"future_event_time" and dead.value == batch[1][1]
    assert [s.post_id for s in outputs_of(outcomes, ScoredPost)] == ["p"]


async def test_dead_letters_keep_the_record_but_not_its_pii() -> None:
    raw = b'{"schema_version": 1, "text": "mail bob@example.com or call +44 7700 900123", "ts": 5}'
    outcomes = await process(
        [(RecordMeta("chat", 0, 7, b"k"), raw)],
        Route("chat", ChatMessage, handle_chat, text_field="text"),
        make_ctx(),
    )
    dead = outcomes[0]
    assert isinstance(dead, DeadLetter)
    assert dead.value == b'{"schema_version": 1, "text": "mail [EMAIL] or call [PHONE]", "ts": 5}'
    assert dict(dead.headers)["x-dlq-redacted"] == b"email=1,phone=1"


async def test_an_idle_cart_turns_into_cart_abandoner_at_the_next_event() -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def click(kind: str, minutes: int, **extra: object) -> bytes:
        body = {
            "schema_version": 1,
            "event_id": f"e{minutes}{kind}",
            "user_id": "u5",
            "session_id": "s",
            "ts": (start + timedelta(minutes=minutes)).isoformat(),
            "type": kind,
            **extra,
        }
        return orjson.dumps(body)

    raws = [click("add_to_cart", 0, product_id=42), click("page_view", 10), click("page_view", 45)]
    ctx = make_ctx()
    updates = outputs_of(await handle_clicks(records(raws, ClickEvent, "clickstream"), ctx), SegmentUpdate)
    assert [(u.entered, u.exited) for u in updates] == [
        (["high_intent", "new_visitor"], []),
        (["cart_abandoner"], ["high_intent"]),
    ]
    assert updates[1].reasons[0] == "enter:cart_abandoner:cart_items=1_idle_min=45"


async def test_deal_searches_make_a_bargain_hunter() -> None:
    raws = [
        orjson.dumps(
            {
                "schema_version": 1,
                "event_id": f"q{i}",
                "user_id": "u6",
                "session_id": "s",
                "ts": NOW.isoformat(),
                "type": "search",
                "query": q,
            }
        )
        for i, q in enumerate(["milk", "coupon for coffee", "BOGO deals"])
    ]
    updates = outputs_of(
        await handle_clicks(records(raws, ClickEvent, "clickstream"), make_ctx()), SegmentUpdate
    )
    assert "bargain_hunter" in updates[-1].entered


async def test_a_click_batch_waiting_on_the_recommender_keeps_a_concurrent_post() -> None:
    """The clickstream and social agents share the profile table: while a click batch waits on
    the recommender, a post by the same user is counted, and neither update is lost."""
    entered, release = asyncio.Event(), asyncio.Event()

    class HeldRecommender(FakeModels):
        async def recommend(self, histories: Any, *, deadline_s: float | None = None) -> Any:
            entered.set()
            await release.wait()
            return await super().recommend(histories, deadline_s=deadline_s)

    ctx = make_ctx(HeldRecommender())
    session = EventFactory(seed=4).session("42", [11, 12])
    clicks = asyncio.create_task(
        handle_clicks(records([r.value for r in session], ClickEvent, "clickstream"), ctx)
    )
    await entered.wait()  # the click batch is inside its recommender call
    post = EventFactory(seed=5).social(text="I love it", user_id="u42", brand="acme").value
    release.set()  # the post's own segment change calls the recommender too
    await handle_social(records([post], SocialPost, "social"), ctx)
    await clicks
    profile = ctx.profiles["u42"]
    assert (profile["events"], profile["texts"]) == (len(session), 1), profile
