"""Customer-service decisions: which catalogue reply to send, or when to hand off to a human.

The catalogue (`config/replies.json`) holds several replies per intent, each with an escalation
rule. A reply is chosen among those of the predicted intent by cosine similarity between the
customer's message and the reply text, both embedded by the same encoder pass. Hand-off rules
come first and are deliberately conservative: a wrong automatic answer to an angry customer
costs more than a human's minute.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.errors import ConfigError
from streams.labels import ModelVersion
from streams.pii import redact
from streams.schemas.outputs import Sentiment, SentimentLabel

log = logging.getLogger("streams.replies")

REPLIES_FILE = Path(__file__).resolve().parent.parent / "config" / "replies.json"
MIN_INTENT_CONFIDENCE = 0.55
ANGRY_MAX_P_POSITIVE = 0.10
ALWAYS_HUMAN = frozenset({"human_agent", "other"})
# Customers the retention team wants to hear from when they are unhappy (see streams/segments.py).
AT_RISK_SEGMENTS = frozenset({"churn_risk", "detractor"})
# 4-8 digits: longer runs are more likely phone or card numbers, which never go into a reply.
ORDER_ID = re.compile(r"(?:order|#)\s*(?:no\.?|number|num|#)?\s*#?\s*(\d{4,8})\b", re.IGNORECASE)


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    intent: str
    text: str = Field(min_length=1)
    escalate: Literal["never", "if_negative", "always"] = "never"
    needs: list[str] = Field(default_factory=list, description="Context keys the text's placeholders use.")


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    replies: list[Reply] = Field(min_length=1)

    def for_intent(self, intent: str) -> list[int]:
        return [i for i, r in enumerate(self.replies) if r.intent == intent]


def load_catalogue(path: Path = REPLIES_FILE) -> Catalogue:
    try:
        return Catalogue.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise ConfigError(f"cannot load the reply catalogue from {path}: {exc}") from exc


class _Encoder(Protocol):
    async def score_texts(self, texts: Sequence[str], *, deadline_s: float | None = None) -> Any: ...


class VersionChanged(Exception):
    """The encoder answered with another version than the one wanted (a swap is under way)."""

    def __init__(self, wanted: ModelVersion, answered: ModelVersion) -> None:
        super().__init__(f"wanted reply embeddings of {wanted}, {answered} answered")
        self.wanted, self.answered = wanted, answered


class ReplyIndex:
    """The catalogue's reply texts embedded by the served encoder, once per encoder version: a
    message and the replies it is compared with must be embedded by the same version, or their
    cosine similarity means nothing. A version swap therefore recomputes the embeddings (and
    forgets the older version's, so a rollback recomputes them too: `computed` counts it)."""

    CHUNK = 32

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._embeddings: dict[ModelVersion, np.ndarray] = {}
        self.computed: dict[ModelVersion, int] = {}

    async def embeddings(self, models: _Encoder, version: ModelVersion) -> np.ndarray:
        """The replies' embeddings by `version`. Raises VersionChanged when another version
        answers: the caller scores its messages again, by the version now served."""
        if version in self._embeddings:
            return self._embeddings[version]
        texts = [r.text for r in self.catalogue.replies]
        chunks = [
            await models.score_texts(texts[i : i + self.CHUNK]) for i in range(0, len(texts), self.CHUNK)
        ]
        for chunk in chunks:
            if chunk.model != version:
                raise VersionChanged(version, chunk.model)
        self._embeddings = {version: np.concatenate([c.embedding for c in chunks])}
        self.computed[version] = self.computed.get(version, 0) + 1
        log.info(
            "embedded the %d catalogue replies with %s version %d", len(texts), version.name, version.version
        )
        return self._embeddings[version]


@dataclass(frozen=True)
class Decision:
    action: Literal["reply", "handoff"]
    reply_id: str | None
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


def reply_context(text: str, profile: Mapping[str, Any] | None) -> dict[str, str]:
    """The facts a reply may use: an order number the customer gave, and what the user's profile
    (the clickstream's table) knows. Only these keys can fill a reply's placeholders."""
    context: dict[str, str] = {}
    if found := ORDER_ID.search(text):
        context["order_id"] = found.group(1)
    if profile:
        if profile.get("last_purchase"):
            context["last_order_date"] = str(profile["last_purchase"])[:10]
        if profile.get("segments"):
            context["segments"] = ",".join(profile["segments"])
    return context


def _handoff(queue: str, reasons: list[str], why: str) -> Decision:
    return Decision("handoff", None, None, queue, [*reasons, f"handoff:{why}"])


def decide(
    intent: str,
    confidence: float,
    sentiment: Sentiment,
    message_embedding: np.ndarray,
    catalogue: Catalogue,
    reply_embeddings: np.ndarray,
    context: Mapping[str, str] | None = None,
) -> Decision:
    """`reply_embeddings[i]` is the normalised embedding of `catalogue.replies[i].text`;
    `context` (from `reply_context`) fills the placeholders of the replies that need it."""
    context = context or {}
    reasons = [
        f"intent:{intent}:{confidence:.2f}",
        f"sentiment:{sentiment.label.value}:{sentiment.p_positive:.2f}",
    ]
    if context:
        reasons.append("context:" + ",".join(sorted(context)))
    segments = set(filter(None, context.get("segments", "").split(",")))
    if intent in ALWAYS_HUMAN:
        return _handoff("general", reasons, f"intent_{intent}")
    if sentiment.p_positive <= ANGRY_MAX_P_POSITIVE:
        return _handoff("priority", reasons, "angry_customer")
    if sentiment.label is SentimentLabel.NEGATIVE and segments & AT_RISK_SEGMENTS:
        return _handoff("retention", reasons, "unhappy_" + "+".join(sorted(segments & AT_RISK_SEGMENTS)))
    if confidence < MIN_INTENT_CONFIDENCE:
        return _handoff("general", reasons, f"low_confidence<{MIN_INTENT_CONFIDENCE}")
    usable = [i for i in catalogue.for_intent(intent) if set(catalogue.replies[i].needs) <= set(context)]
    if not usable:
        return _handoff("general", reasons, "no_reply_for_context")
    similarity = reply_embeddings[usable] @ message_embedding
    best = usable[int(np.argmax(similarity))]
    reply = catalogue.replies[best]
    reasons.append(f"reply:{reply.id}:similarity={float(similarity.max()):.2f}")
    if reply.escalate == "always" or (
        reply.escalate == "if_negative" and sentiment.label is SentimentLabel.NEGATIVE
    ):
        return _handoff(
            "priority" if sentiment.label is SentimentLabel.NEGATIVE else "general",
            reasons,
            f"reply_{reply.id}_escalates_{reply.escalate}",
        )
    text = redact(reply.text.format_map(context)) if reply.needs else reply.text  # filled: redact again
    return Decision("reply", reply.id, text, None, reasons)
