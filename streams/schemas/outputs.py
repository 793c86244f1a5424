"""Output payloads: segment updates and customer-service replies (bid responses live in bids.py)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from streams.schemas.common import OutputModel, SourceRef


class SentimentLabel(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


class Sentiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: SentimentLabel
    p_positive: float = Field(ge=0, le=1)


class Recommendation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: int
    score: float


class SegmentUpdate(OutputModel):
    """A user's segments changed. Key: `user_id`. Drop an update whose `version` is not greater than
    the last one you applied for that user."""

    update_id: str
    user_id: str
    version: int = Field(ge=1)
    segments: list[str]
    entered: list[str]
    exited: list[str]
    reasons: list[str] = Field(description="Reason codes: which signals moved the user.")
    recommendations: list[Recommendation]
    source: SourceRef
    ts: AwareDatetime


class CsReply(OutputModel):
    """The answer to one customer message: a reply, or a hand-off to a human queue. Key:
    `conversation_id`. The customer's text is never echoed."""

    reply_id: str
    conversation_id: str
    in_reply_to: str
    user_id: str
    intent: str
    intent_confidence: float = Field(ge=0, le=1)
    sentiment: Sentiment
    action: Literal["reply", "handoff"]
    reply_text: str | None = None
    handoff_queue: str | None = None
    reasons: list[str]
    source: SourceRef
    ts: AwareDatetime
