"""Reply choice and escalation rules (pure logic)."""

from __future__ import annotations

import numpy as np

from streams.replies import Catalogue, Reply, decide, sentiment_of

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
    d = decide("order_status", 0.9, sentiment_of(0.5, BAND), msg(2), CAT, EMB, context=["order_id"])
    assert d.reply_id == "track"


def test_sentiment_band() -> None:
    assert [sentiment_of(p, BAND).label.value for p in (0.1, 0.35, 0.5, 0.65, 0.9)] == [
        "negative",
        "neutral",
        "neutral",
        "neutral",
        "positive",
    ]
