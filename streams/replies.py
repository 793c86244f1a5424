"""Customer-service decisions: which reply to send, or when to hand off to a human.

Hand-off rules come first and are deliberately conservative: a wrong automatic answer to an
angry customer costs more than a human's minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streams.schemas.outputs import Sentiment, SentimentLabel

MIN_INTENT_CONFIDENCE = 0.55
ANGRY_MAX_P_POSITIVE = 0.10

REPLIES: dict[str, str] = {
    "order_status": "You can follow your order at any time under Account > Orders; we also email every status change.",
    "shipping_delay": "Sorry your parcel is late. We have asked the carrier for an update and will email you within 24 hours.",
    "return_refund": "You can return items within 30 days from Account > Orders > Return; refunds reach your card in 3-5 days.",
    "cancel_order": "Orders can be cancelled under Account > Orders until they ship; after that, please start a return.",
    "payment_issue": "Sorry about the payment trouble. Please check the card details, or try another method; you are never charged twice.",
    "product_question": "Good question! The product page lists sizes, materials and stock; reply here if anything is missing.",
    "discount_promo": "Current offers are on our Deals page; a code applies at checkout, one code per order.",
    "account_login": "You can reset your password from the sign-in page with 'Forgot password'; the link is valid for one hour.",
    "complaint": "We are sorry this happened. Your message has been logged and a specialist will review it.",
    "compliment": "Thank you so much for the kind words, we will pass them on to the team!",
    "greeting": "Hello! How can we help you today?",
}
ALWAYS_HUMAN = frozenset({"human_agent", "other"})


@dataclass(frozen=True)
class Decision:
    action: Literal["reply", "handoff"]
    reply_text: str | None
    handoff_queue: str | None
    reasons: list[str]


def sentiment_of(p_positive: float, band: tuple[float, float]) -> Sentiment:
    low, high = band
    if p_positive < low:
        label = SentimentLabel.NEGATIVE
    elif p_positive > high:
        label = SentimentLabel.POSITIVE
    else:
        label = SentimentLabel.NEUTRAL
    return Sentiment(label=label, p_positive=round(float(p_positive), 4))


def decide(intent: str, confidence: float, p_positive: float) -> Decision:
    reasons = [f"intent:{intent}:{confidence:.2f}", f"p_positive:{p_positive:.2f}"]
    if intent in ALWAYS_HUMAN or intent not in REPLIES:
        return Decision("handoff", None, "general", [*reasons, f"handoff:intent_{intent}"])
    if p_positive <= ANGRY_MAX_P_POSITIVE:
        return Decision("handoff", None, "priority", [*reasons, "handoff:angry_customer"])
    if confidence < MIN_INTENT_CONFIDENCE:
        return Decision(
            "handoff", None, "general", [*reasons, f"handoff:low_confidence<{MIN_INTENT_CONFIDENCE}"]
        )
    return Decision("reply", REPLIES[intent], None, [*reasons, "reply:catalogue"])
