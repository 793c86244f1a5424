"""Reply choice and escalation rules (pure logic)."""

from __future__ import annotations

import string

import numpy as np

from streams.replies import Catalogue, Reply, decide, load_catalogue, reply_context, sentiment_of

BAND = (0.35, 0.65)
CAT = Catalogue(
    replies=[
        Reply(id="how-to-return", intent="return_refund", text="How to return an item."),
        Reply(
            id="refund-late",
            intent="return_refund",
            text="Your refund is on its way.",
            escalate="if_negative",
        ),
        Reply(id="track", intent="order_status", text="Track order {order_id}.", needs=["order_id"]),
        Reply(id="hello", intent="greeting", text="Hello!"),
    ]
)
# Unit vectors: each reply along its own axis, so similarity picks by axis.
EMB = np.eye(4, 8, dtype=np.float32)


def msg(axis: int) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    v[axis] = 1.0
    return v


def test_the_most_similar_reply_of_the_intent_is_chosen() -> None:
    d = decide("return_refund", 0.9, sentiment_of(0.5, BAND), msg(0), CAT, EMB)
    assert (d.action, d.reply_id) == ("reply", "how-to-return")
    d = decide("return_refund", 0.9, sentiment_of(0.5, BAND), msg(1), CAT, EMB)
    assert (d.action, d.reply_id) == ("reply", "refund-late")
    assert any(r.startswith("reply:refund-late:similarity=1.00") for r in d.reasons)


def test_if_negative_replies_escalate_for_unhappy_customers() -> None:
    d = decide("return_refund", 0.9, sentiment_of(0.2, BAND), msg(1), CAT, EMB)
    assert (d.action, d.handoff_queue) == ("handoff", "priority")


def test_angry_low_confidence_and_human_requests_hand_off() -> None:
    assert decide("greeting", 0.9, sentiment_of(0.05, BAND), msg(3), CAT, EMB).handoff_queue == "priority"
    low = decide("greeting", 0.3, sentiment_of(0.5, BAND), msg(3), CAT, EMB)
    assert low.action == "handoff" and "handoff:low_confidence<0.55" in low.reasons
    assert decide("human_agent", 0.99, sentiment_of(0.9, BAND), msg(3), CAT, EMB).action == "handoff"


def test_replies_needing_missing_context_are_not_sent() -> None:
    d = decide("order_status", 0.9, sentiment_of(0.5, BAND), msg(2), CAT, EMB)
    assert d.action == "handoff" and d.reasons[-1] == "handoff:no_reply_for_context"
    d = decide("order_status", 0.9, sentiment_of(0.5, BAND), msg(2), CAT, EMB, {"order_id": "55123"})
    assert (d.reply_id, d.reply_text) == ("track", "Track order 55123.")
    assert "context:order_id" in d.reasons


def test_context_comes_from_the_message_and_the_profile() -> None:
    profile = {"last_purchase": "2026-11-20T10:00:00+00:00", "segments": ["churn_risk", "high_intent"]}
    assert reply_context("can u tell me the status of order 55123", profile) == {
        "order_id": "55123",
        "last_order_date": "2026-11-20",
        "segments": "churn_risk,high_intent",
    }
    assert reply_context("where is order #4821?", None) == {"order_id": "4821"}
    assert reply_context("my card 4111 was charged twice", {}) == {}
    assert reply_context("order 0791234567 (that's my phone)", None) == {}  # too long for an order id


def test_unhappy_at_risk_customers_go_to_retention() -> None:
    unhappy = sentiment_of(0.3, BAND)
    d = decide("return_refund", 0.9, unhappy, msg(0), CAT, EMB, {"segments": "churn_risk"})
    assert (d.action, d.handoff_queue, d.reasons[-1]) == (
        "handoff",
        "retention",
        "handoff:unhappy_churn_risk",
    )
    d = decide("return_refund", 0.9, sentiment_of(0.5, BAND), msg(0), CAT, EMB, {"segments": "churn_risk"})
    assert d.action == "reply"


def test_catalogue_placeholders_are_declared_and_fillable() -> None:
    catalogue = load_catalogue()
    known = {"order_id", "last_order_date"}  # what reply_context can provide
    for reply in catalogue.replies:
        placeholders = {name for _, name, _, _ in string.Formatter().parse(reply.text) if name}
        assert placeholders == set(reply.needs), reply.id
        assert set(reply.needs) <= known, reply.id


def test_sentiment_band() -> None:
    assert [sentiment_of(p, BAND).label.value for p in (0.1, 0.35, 0.5, 0.65, 0.9)] == [
        "negative",
        "neutral",
        "neutral",
        "neutral",
        "positive",
    ]
