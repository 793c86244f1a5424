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


class ModelRef(BaseModel):
    """The model version that produced an output, as Triton named it in its answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(ge=1)


class ModelShare(ModelRef):
    posts: int = Field(ge=1, description="How many of the window's posts this version scored.")


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
    model: ModelRef | None = Field(
        default=None, description="The recommender version that ranked `recommendations` (absent without)."
    )
    text_model: ModelRef | None = Field(
        default=None, description="The text encoder version whose sentiment moved the user (social only)."
    )
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
    catalogue_reply_id: str | None = Field(default=None, description="Which catalogue reply was sent.")
    reply_text: str | None = None
    handoff_queue: str | None = None
    customer_segments: list[str] = Field(
        default_factory=list, description="The user's segments when the message was answered (context)."
    )
    reasons: list[str]
    model: ModelRef | None = Field(
        default=None, description="The text encoder version that read the message and ranked the replies."
    )
    source: SourceRef
    ts: AwareDatetime


class ScoredPost(OutputModel):
    """Internal (`social-scored`, key: brand): a social post after the encoder pass."""

    post_id: str
    brand: str
    user_id: str
    ts: AwareDatetime
    p_positive: float = Field(ge=0, le=1)
    sentiment: SentimentLabel
    source: SourceRef | None = Field(
        default=None, description="The social post this was scored from: brand windows count each once."
    )
    model: ModelRef | None = Field(default=None, description="The text encoder version that scored it.")

    model_config = ConfigDict(extra="ignore", frozen=True)  # read back by the worker: tolerate additions


class BrandWindow(OutputModel):
    """One closed tumbling window of a brand's social sentiment. Key: `brand`. `window_id` is
    unique per brand and window, so a redelivered window can be dropped by id."""

    window_id: str
    brand: str
    window_start: AwareDatetime
    window_end: AwareDatetime
    volume: int = Field(ge=1)
    mean_p_positive: float = Field(ge=0, le=1)
    share_negative: float = Field(ge=0, le=1)
    late_posts: int = Field(ge=0, description="Posts that arrived after their own window had closed.")
    baseline_share_negative: float | None = Field(
        default=None, description="Absent until the brand has enough closed windows for a baseline."
    )
    reasons: list[str]
    model: ModelRef | None = Field(
        default=None,
        description="The text encoder version that scored most of the window's posts (the newer on a tie).",
    )
    models: list[ModelShare] = Field(
        default_factory=list,
        description="Every version that scored the window's posts, with how many: two across a version swap.",
    )


class BrandAlert(OutputModel):
    """The negative share of a brand's window spiked against its recent baseline. Key: `brand`."""

    alert_id: str
    brand: str
    window_start: AwareDatetime
    window_end: AwareDatetime
    volume: int
    share_negative: float
    baseline_share_negative: float
    reasons: list[str]
    model: ModelRef | None = Field(default=None, description="As in the window it was raised for.")
