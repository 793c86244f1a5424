"""Example messages for the AsyncAPI document, built as model instances and serialised with the
worker's own `encode`, so that each example is valid by construction. A dead-letter example is
what `streams.dlq.dead_letter` makes of a bad record, headers and redaction included."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from streams.dlq import RecordMeta, dead_letter
from streams.errors import BadInput, Reason
from streams.schemas import (
    BidRequest,
    BidResponse,
    BrandAlert,
    BrandWindow,
    ChatMessage,
    ClickEvent,
    ClickType,
    CsReply,
    Recommendation,
    ScoredPost,
    SegmentUpdate,
    Sentiment,
    SentimentLabel,
    SocialPost,
    SourceRef,
)
from streams.schemas.adevents import AdEvent, AdOutcome, NoticeKind, OutcomeKind
from streams.schemas.bids import Bid, NoBidReason, ResponseExt, SeatBid
from streams.schemas.outputs import ModelRef, ModelShare
from streams.serde import encode, loads
from streams.topics import DLQ_SUFFIX, INPUTS, INTERNAL

T0 = datetime(2026, 3, 2, 9, 30, 0, 125000, tzinfo=UTC)
_TEXT = ModelRef(name="text_encoder", version=1)  # the versions that answered (Triton's model_version)
_RECOMMENDER = ModelRef(name="recommender", version=1)


@dataclass(frozen=True)
class Example:
    name: str
    summary: str
    key: str
    payload: Any
    headers: dict[str, str] | None = None

    def message_example(self) -> dict[str, Any]:
        """As an AsyncAPI Message Example Object; the key goes in the summary (there is no field)."""
        out: dict[str, Any] = {"name": self.name, "summary": f"{self.summary} Key: `{self.key}`."}
        if self.headers is not None:
            out["headers"] = self.headers
        out["payload"] = self.payload
        return out


def _of(name: str, summary: str, key: str, model: BaseModel) -> Example:
    return Example(name, summary, key, loads(encode(model)))


def _source(topic: str, partition: int, offset: int) -> SourceRef:
    return SourceRef(topic=topic, partition=partition, offset=offset)


def _dead_letter(
    name: str, summary: str, topic: str, value: bytes, error: BadInput, headers: list[tuple[str, bytes]]
) -> Example:
    meta = RecordMeta(topic=topic, partition=1, offset=7, key=b"u1001", headers=headers)
    made = dead_letter(meta, value, error, stage="decode", dlq_topic=f"{topic}.dlq")
    assert made.key is not None and made.value is not None
    return Example(
        name,
        summary,
        made.key.decode(),
        made.value.decode(),
        {k: v.decode() for k, v in made.headers},
    )


_BID_REQUEST = BidRequest.model_validate(
    {
        "id": "req-8f2c",
        "imp": [
            {
                "id": "1",
                "tagid": "homepage-mrec",
                "bidfloor": 0.05,
                "bidfloorcur": "USD",
                "banner": {"w": 300, "h": 250},
            }
        ],
        "site": {"id": "site-42", "domain": "recipes.example", "page": "https://recipes.example/pasta"},
        "device": {"devicetype": 2, "ua": "Mozilla/5.0", "ip": "192.0.2.1"},
        "user": {"id": "u1001"},
        "at": 1,
        "tmax": 100,
        "cur": ["USD"],
    }
)


def _dead_letters(source: str) -> list[Example]:
    out = [
        _dead_letter(
            "not-json",
            f"A `{source}` record cut short; the original record's own header is kept.",
            source,
            b'{"schema_version": 1, "user_id": "u1001"',
            BadInput(Reason.NOT_JSON, "unexpected end of data: line 1 column 41 (char 40)"),
            [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
        )
    ]
    if source == "chat":
        out.append(
            _dead_letter(
                "schema-invalid-redacted",
                "A chat message without its required `ts`; the e-mail address in it is redacted.",
                source,
                b'{"schema_version": 1, "message_id": "m1", "conversation_id": "c1", "user_id": "u1001", '
                b'"text": "mail me at jo@example.com"}',
                BadInput(Reason.SCHEMA, "ts: Field required"),
                [],
            )
        )
    return out


def examples() -> dict[str, list[Example]]:
    """By topic base name."""
    clicks = "clickstream"
    return {
        "clickstream": [
            _of(
                "add-to-cart",
                "A product added to the cart.",
                "u1001",
                ClickEvent(
                    schema_version=1,
                    event_id="e-5f1c",
                    user_id="u1001",
                    session_id="s-77",
                    ts=T0,
                    type=ClickType.ADD_TO_CART,
                    product_id=196,
                    category="snacks",
                    price=4.99,
                    quantity=2,
                ),
            )
        ],
        "chat": [
            _of(
                "order-question",
                "A customer asks about an order.",
                "u1001",
                ChatMessage(
                    schema_version=1,
                    message_id="m-31d0",
                    conversation_id="c-u1001",
                    user_id="u1001",
                    ts=T0,
                    text="Where is my order 123456? It was due yesterday.",
                    channel="app",
                ),
            )
        ],
        "social": [
            _of(
                "brand-post",
                "A post that mentions a brand.",
                "s1",
                SocialPost(
                    schema_version=1,
                    post_id="p-9a41",
                    user_id="s1",
                    brand="freshcart",
                    platform="reddit",
                    ts=T0,
                    text="freshcart delivered in 20 minutes, love it",
                ),
            )
        ],
        "bid-requests": [_of("banner", "A 300x250 banner on a recipe site.", "u1001", _BID_REQUEST)],
        "social-scored": [
            _of(
                "scored",
                "The brand post above after the encoder pass.",
                "freshcart",
                ScoredPost(
                    post_id="p-9a41",
                    brand="freshcart",
                    user_id="s1",
                    ts=T0,
                    p_positive=0.97,
                    sentiment=SentimentLabel.POSITIVE,
                    source=_source("social", 2, 17),
                    model=_TEXT,
                ),
            )
        ],
        "segment-updates": [
            _of(
                "entered-cart-abandoner",
                "The user left items in the cart: version 3 of their segments.",
                "u1001",
                SegmentUpdate(
                    update_id=f"segment:{clicks}/1/41",
                    user_id="u1001",
                    version=3,
                    segments=["cart_abandoner", "high_intent"],
                    entered=["cart_abandoner"],
                    exited=[],
                    reasons=["enter:cart_abandoner:cart_items=2_idle_min=31"],
                    recommendations=[
                        Recommendation(product_id=196, score=0.31),
                        Recommendation(product_id=14084, score=0.12),
                    ],
                    model=_RECOMMENDER,
                    source=_source(clicks, 1, 41),
                    ts=T0,
                ),
            )
        ],
        "ad-bids": [
            _of(
                "bid",
                "A bid on the banner above.",
                "u1001",
                BidResponse(
                    id="req-8f2c",
                    seatbid=[
                        SeatBid(
                            bid=[
                                Bid(
                                    id="req-8f2c:1",
                                    impid="1",
                                    price=2.36,
                                    adomain=["freshcart.example"],
                                    crid="house-grocery-300x250",
                                    cid="house-grocery",
                                    w=300,
                                    h=250,
                                )
                            ],
                            seat="marketing-scorer",
                        )
                    ],
                    ext=ResponseExt(
                        response_id="bid:bid-requests/1/12",
                        reasons=["history_items:6", "imp:1:bid:house-grocery:price=2.36"],
                        source=_source("bid-requests", 1, 12),
                        propensity=0.42,
                        model=_RECOMMENDER,
                    ),
                ),
            ),
            _of(
                "no-bid",
                "No bid: the user has no purchase history.",
                "u-never-seen",
                BidResponse(
                    id="req-77aa",
                    nbr=NoBidReason.UNMATCHED_USER,
                    ext=ResponseExt(
                        response_id="bid:bid-requests/3/5",
                        reasons=["history_items:0"],
                        source=_source("bid-requests", 3, 5),
                    ),
                ),
            ),
        ],
        "cs-replies": [
            _of(
                "reply",
                "An automatic reply with the order number filled in.",
                "c-u1001",
                CsReply(
                    reply_id="reply:chat/1/9",
                    conversation_id="c-u1001",
                    in_reply_to="m-31d0",
                    user_id="u1001",
                    intent="order_status",
                    intent_confidence=0.93,
                    sentiment=Sentiment(label=SentimentLabel.NEUTRAL, p_positive=0.41),
                    action="reply",
                    catalogue_reply_id="order_status_2",
                    reply_text="Order 123456 is on its way; you can follow it under My orders.",
                    customer_segments=["high_intent"],
                    reasons=[
                        "intent:order_status:0.93",
                        "sentiment:neutral:0.41",
                        "context:order_id,segments",
                        "reply:order_status_2:similarity=0.88",
                    ],
                    model=_TEXT,
                    source=_source("chat", 1, 9),
                    ts=T0,
                ),
            ),
            _of(
                "handoff",
                "An angry customer goes to a human, in the priority queue.",
                "c-u214",
                CsReply(
                    reply_id="reply:chat/0/3",
                    conversation_id="c-u214",
                    in_reply_to="m-02be",
                    user_id="u214",
                    intent="complaint",
                    intent_confidence=0.94,
                    sentiment=Sentiment(label=SentimentLabel.NEGATIVE, p_positive=0.04),
                    action="handoff",
                    handoff_queue="priority",
                    reasons=["intent:complaint:0.94", "sentiment:negative:0.04", "handoff:angry_customer"],
                    model=_TEXT,
                    source=_source("chat", 0, 3),
                    ts=T0,
                ),
            ),
        ],
        "brand-sentiment": [
            _of(
                "window",
                "A closed one-minute window of a brand's posts.",
                "brewbros",
                BrandWindow(
                    window_id="brand:brewbros:1772443800",
                    brand="brewbros",
                    window_start=T0.replace(second=0, microsecond=0),
                    window_end=T0.replace(second=0, microsecond=0) + timedelta(minutes=1),
                    volume=8,
                    mean_p_positive=0.23,
                    share_negative=0.875,
                    late_posts=0,
                    baseline_share_negative=0.16,
                    reasons=[
                        "volume=8",
                        "share_negative=0.88",
                        "baseline=0.16",
                        "spike:share-baseline=0.72>=0.2",
                    ],
                    model=_TEXT,
                    models=[ModelShare(name="text_encoder", version=1, posts=8)],
                ),
            )
        ],
        "brand-alerts": [
            _of(
                "spike",
                "The window above raised an alert.",
                "brewbros",
                BrandAlert(
                    alert_id="alert:brand:brewbros:1772443800",
                    brand="brewbros",
                    window_start=T0.replace(second=0, microsecond=0),
                    window_end=T0.replace(second=0, microsecond=0) + timedelta(minutes=1),
                    volume=8,
                    share_negative=0.875,
                    baseline_share_negative=0.16,
                    reasons=[
                        "volume=8",
                        "share_negative=0.88",
                        "baseline=0.16",
                        "spike:share-baseline=0.72>=0.2",
                    ],
                ),
            )
        ],
        "ad-events": [
            _of(
                "billing",
                "The billing notice of the bid above: it cleared at 1.87 in a second-price auction.",
                "u1001",
                AdEvent(
                    kind=NoticeKind.BILLING,
                    bid_id="req-8f2c:1",
                    imp_id="1",
                    campaign="house-grocery",
                    user="u1001",
                    partition=1,
                    bid_price=2.36,
                    issued_ms=int(T0.timestamp() * 1000),
                    auction_type=2,
                    price=1.87,
                    received=T0 + timedelta(seconds=2),
                ),
            )
        ],
        "ad-outcomes": [
            _of(
                "billed",
                "Spend booked for the billing notice above, the 2.36 CPM reservation released.",
                "u1001",
                AdOutcome(
                    outcome_id="billed:req-8f2c:1",
                    kind=OutcomeKind.BILLED,
                    bid_id="req-8f2c:1",
                    campaign="house-grocery",
                    user="u1001",
                    auction_type=2,
                    bid_price=2.36,
                    clearing_price=1.87,
                    charged_micros=1870,
                    released_micros=2360,
                    bid_at=T0,
                    at=T0 + timedelta(seconds=2),
                ),
            )
        ],
        "bid-replies": [
            _of(
                "no-bid",
                "The answer to a request from the HTTP gateway (its reply headers travel beside it).",
                "u-never-seen",
                BidResponse(
                    id="req-77ab",
                    nbr=NoBidReason.UNMATCHED_USER,
                    ext=ResponseExt(
                        response_id="bid:bid-requests/3/6",
                        reasons=["history_items:0"],
                        source=_source("bid-requests", 3, 6),
                    ),
                ),
            )
        ],
        **{f"{source}{DLQ_SUFFIX}": _dead_letters(source) for source in (*INPUTS, *INTERNAL)},
    }
