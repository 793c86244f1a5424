"""Pydantic models for every topic's payload, validated at the boundary.

Inputs tolerate unknown fields (producers may run a newer minor version) but reject an unknown
`schema_version`; outputs are strict so that what we publish is exactly what is documented.
"""

from streams.schemas.bids import BidRequest, BidResponse
from streams.schemas.common import SUPPORTED_SCHEMA_VERSIONS, SourceRef
from streams.schemas.events import ChatMessage, ClickEvent, ClickType, SocialPost
from streams.schemas.outputs import (
    BrandAlert,
    BrandWindow,
    CsReply,
    ModelRef,
    Recommendation,
    ScoredPost,
    SegmentUpdate,
    Sentiment,
    SentimentLabel,
)

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS",
    "BidRequest",
    "BidResponse",
    "BrandAlert",
    "BrandWindow",
    "ChatMessage",
    "ClickEvent",
    "ClickType",
    "CsReply",
    "ModelRef",
    "Recommendation",
    "ScoredPost",
    "SegmentUpdate",
    "Sentiment",
    "SentimentLabel",
    "SocialPost",
    "SourceRef",
]
