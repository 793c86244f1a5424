"""Every topic the scorer reads or writes, what travels on it, and how a consumer should read it.

The topic names come from `streams.topics`, the payload models from `streams.schemas`, the
dead-letter header names from `streams.dlq`; this module only says which goes with which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from streams import dlq
from streams.errors import Reason
from streams.schemas import (
    BidRequest,
    BidResponse,
    BrandAlert,
    BrandWindow,
    ChatMessage,
    ClickEvent,
    CsReply,
    ScoredPost,
    SegmentUpdate,
    SocialPost,
)
from streams.schemas.adevents import AdEvent, AdOutcome
from streams.topics import DLQ_SUFFIX, INPUTS, INTERNAL, OUTPUTS

# What a topic is to a consumer. `input`: others write, the worker reads. `output`: the worker
# writes, anyone may read. `internal` and `changelog`: the worker writes and reads them itself.
Kind = Literal["input", "output", "internal", "dead-letter", "changelog"]

# Faust's table changelogs, `<app id>-<table>-changelog` (streams/app.py names the tables).
CHANGELOG_TABLES = ("profiles", "brand-windows", "bid-ledger")

Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]
DeadLetterStage = Literal["decode", "inference", "handler"]


class DeadLetterHeaders(BaseModel):
    """The headers of a dead letter, as UTF-8 strings. The original record's own headers travel
    beside them (up to 64 KiB), so other header names occur too."""

    model_config = ConfigDict(extra="allow", frozen=True)

    reason: Reason = Field(
        validation_alias=dlq.HEADER_REASON,
        serialization_alias=dlq.HEADER_REASON,
        description="Why the record can never be processed.",
    )
    error: str = Field(
        validation_alias=dlq.HEADER_ERROR,
        serialization_alias=dlq.HEADER_ERROR,
        description="The detail: field paths and messages, never the offending values (at most 512 characters).",
    )
    topic: str = Field(
        validation_alias=dlq.HEADER_TOPIC,
        serialization_alias=dlq.HEADER_TOPIC,
        description="The topic the record was read from.",
    )
    partition: Digits = Field(
        validation_alias=dlq.HEADER_PARTITION,
        serialization_alias=dlq.HEADER_PARTITION,
        description="Its partition.",
    )
    offset: Digits = Field(
        validation_alias=dlq.HEADER_OFFSET,
        serialization_alias=dlq.HEADER_OFFSET,
        description="Its offset: where to find the original.",
    )
    stage: DeadLetterStage = Field(
        validation_alias=dlq.HEADER_STAGE,
        serialization_alias=dlq.HEADER_STAGE,
        description="Where in the worker it failed.",
    )
    redacted: Annotated[str, StringConstraints(pattern=r"^[a-z]+=[0-9]+(,[a-z]+=[0-9]+)*$")] | None = Field(
        default=None,
        validation_alias=dlq.HEADER_REDACTED,
        serialization_alias=dlq.HEADER_REDACTED,
        description="PII replaced in the value, key and copied headers, e.g. `card=1,email=2`.",
    )
    truncated: Digits | None = Field(
        default=None,
        validation_alias=dlq.HEADER_TRUNCATED,
        serialization_alias=dlq.HEADER_TRUNCATED,
        description="The value was cut to 768 KiB; this is its original length in bytes.",
    )
    key_truncated: Digits | None = Field(
        default=None,
        validation_alias=dlq.HEADER_KEY_TRUNCATED,
        serialization_alias=dlq.HEADER_KEY_TRUNCATED,
        description="The key was cut to 16 KiB; this is its original length in bytes.",
    )
    headers_dropped: Digits | None = Field(
        default=None,
        validation_alias=dlq.HEADER_HEADERS_DROPPED,
        serialization_alias=dlq.HEADER_HEADERS_DROPPED,
        description="How many of the original record's headers did not fit in 64 KiB and were dropped.",
    )


@dataclass(frozen=True)
class Payload:
    """One JSON Schema of the contract. `written`: the worker writes it, so the schema describes
    what `streams.serde.encode` puts on the wire; otherwise it describes what the worker accepts."""

    name: str  # the schema file's stem, e.g. "segment-update"
    model: type[BaseModel]
    written: bool


@dataclass(frozen=True)
class Channel:
    base: str  # the topic name without the configurable prefix
    kind: Kind
    summary: str
    key: str  # what the record key holds (UTF-8)
    payload: Payload | None  # None for changelogs (Faust's own format)
    # A consumer's deduplication: the payload field naming the input record the output answers,
    # and for versioned entities the (entity, version) fields: drop a version not above the last.
    dedupe_by: str | None = None
    version_of: tuple[str, str] | None = None

    @property
    def address(self) -> str:
        """The topic name as an AsyncAPI address: `{prefix}` is `MS_TOPIC_PREFIX`, and changelogs
        are named after the app id (`MS_APP_ID`) as well."""
        return f"{{prefix}}{{appId}}-{self.base}" if self.kind == "changelog" else f"{{prefix}}{self.base}"


CLICK_EVENT = Payload("click-event", ClickEvent, written=False)
CHAT_MESSAGE = Payload("chat-message", ChatMessage, written=False)
SOCIAL_POST = Payload("social-post", SocialPost, written=False)
BID_REQUEST = Payload("bid-request", BidRequest, written=False)
SCORED_POST = Payload("scored-post", ScoredPost, written=True)
SEGMENT_UPDATE = Payload("segment-update", SegmentUpdate, written=True)
BID_RESPONSE = Payload("bid-response", BidResponse, written=True)
CS_REPLY = Payload("cs-reply", CsReply, written=True)
BRAND_WINDOW = Payload("brand-window", BrandWindow, written=True)
BRAND_ALERT = Payload("brand-alert", BrandAlert, written=True)
DEAD_LETTER_HEADERS = Payload("dead-letter-headers", DeadLetterHeaders, written=True)
AD_EVENT = Payload("ad-event", AdEvent, written=False)
AD_OUTCOME = Payload("ad-outcome", AdOutcome, written=True)

PAYLOADS = (
    CLICK_EVENT,
    CHAT_MESSAGE,
    SOCIAL_POST,
    BID_REQUEST,
    SCORED_POST,
    SEGMENT_UPDATE,
    BID_RESPONSE,
    CS_REPLY,
    BRAND_WINDOW,
    BRAND_ALERT,
    DEAD_LETTER_HEADERS,
    AD_EVENT,
    AD_OUTCOME,
)

_READ: dict[str, Channel] = {
    "clickstream": Channel(
        "clickstream",
        "input",
        "Shop interactions: page views, searches, carts, purchases.",
        "user_id",
        CLICK_EVENT,
    ),
    "chat": Channel(
        "chat",
        "input",
        "Customers' messages to customer service.",
        "user_id (not the conversation: the user's profile, the reply context, is in the same partition)",
        CHAT_MESSAGE,
    ),
    "social": Channel(
        "social", "input", "Public posts that mention a brand.", "user_id (the author)", SOCIAL_POST
    ),
    "bid-requests": Channel(
        "bid-requests",
        "input",
        "OpenRTB 2.6 bid requests from exchanges (`schema_version` may be omitted).",
        "user.id, else the request id",
        BID_REQUEST,
    ),
    "ad-events": Channel(
        "ad-events",
        "input",
        "Verified win, billing and loss notices of our bids, written by the HTTP gateway to the "
        "partition of the bid request answered (the one its signed URL names).",
        "the bid's user key (user.id, else the request id), as on bid-requests",
        AD_EVENT,
    ),
    "social-scored": Channel(
        "social-scored",
        "internal",
        "Internal: social posts after the encoder pass, re-keyed by brand so that one worker holds "
        "each brand's window. The worker reads it back; it is no contract for other consumers.",
        "brand",
        SCORED_POST,
    ),
}

_WRITTEN: dict[str, Channel] = {
    "segment-updates": Channel(
        "segment-updates",
        "output",
        "A user's segments changed (with next-purchase recommendations).",
        "user_id",
        SEGMENT_UPDATE,
        dedupe_by="update_id",
        version_of=("user_id", "version"),
    ),
    "ad-bids": Channel(
        "ad-bids",
        "output",
        "One OpenRTB 2.6 BidResponse per bid request: a bid, or a no-bid with `nbr`.",
        "the bid request's key (user.id, else the request id)",
        BID_RESPONSE,
        dedupe_by="ext.response_id",
    ),
    "cs-replies": Channel(
        "cs-replies",
        "output",
        "The answer to each customer message: a reply, or a hand-off to a human queue.",
        "conversation_id",
        CS_REPLY,
        dedupe_by="reply_id",
    ),
    "brand-sentiment": Channel(
        "brand-sentiment",
        "output",
        "One record per closed tumbling window of a brand's social sentiment.",
        "brand",
        BRAND_WINDOW,
        dedupe_by="window_id",
    ),
    "brand-alerts": Channel(
        "brand-alerts",
        "output",
        "A brand's negative share spiked against its recent baseline.",
        "brand",
        BRAND_ALERT,
        dedupe_by="alert_id",
    ),
    "ad-outcomes": Channel(
        "ad-outcomes",
        "output",
        "What the worker booked for a bid: won, billed (spend at the clearing price), lost, or "
        "expired (no billing or loss notice within the notice timeout). Every bid ends in one of "
        "billed, lost or expired; a win adds one more.",
        "the bid's user key",
        AD_OUTCOME,
        dedupe_by="outcome_id",
    ),
    "bid-replies": Channel(
        "bid-replies",
        "output",
        "The answers to bid requests that came through the HTTP gateway, with its reply headers; "
        "read back by the gateway, which writes what it answered to ad-bids.",
        "the bid request's key (user.id, else the request id)",
        BID_RESPONSE,
        dedupe_by="ext.response_id",
    ),
}


def _dead_letters(source: str) -> Channel:
    return Channel(
        f"{source}{DLQ_SUFFIX}",
        "dead-letter",
        f"Records of `{source}` that can never be processed: the original key and value bytes "
        "(PII redacted, values over 768 KiB cut), and why in the `x-dlq-*` headers.",
        f"the original record's key (PII redacted), as on `{source}`",
        None,
    )


def _changelog(table: str) -> Channel:
    return Channel(
        f"{table}-changelog",
        "changelog",
        f"Internal: the changelog of the worker's `{table}` table (Faust's format, which may change "
        "with any release). Read by the worker to recover its state; no contract.",
        "the table key's bytes",
        None,
    )


def channels() -> list[Channel]:
    """In `streams.topics` order: inputs, internal, outputs, dead letters, then the changelogs."""
    read = [_READ[t] for t in (*INPUTS, *INTERNAL)]
    return [
        *read,
        *(_WRITTEN[t] for t in OUTPUTS),
        *(_dead_letters(c.base) for c in read),
        *(_changelog(t) for t in CHANGELOG_TABLES),
    ]


def channel(base: str) -> Channel:
    for c in channels():
        if c.base == base:
            return c
    raise KeyError(base)
