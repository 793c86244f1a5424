"""The exception hierarchy of the scorer.

Library errors (orjson, pydantic, tritonclient, the tokenizer) are wrapped into these at the
boundary, so callers branch on *what went wrong for us* rather than on which library said so:
`BadInput` ends in a dead-letter topic, `RetryableInference` is retried with backoff, anything
else is a bug and is allowed to surface.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Machine-readable dead-letter reasons (the `x-dlq-reason` header)."""

    NOT_JSON = "not_json"
    NOT_UTF8 = "not_utf8"
    NOT_OBJECT = "not_object"
    SCHEMA = "schema_invalid"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    OVERSIZED = "oversized"
    FUTURE_EVENT_TIME = "future_event_time"
    INFERENCE_REJECTED = "inference_rejected"
    PROCESSING_ERROR = "processing_error"
    # notices (ad-events, streams.handlers.notices): never charged
    UNKNOWN_BID = "unknown_bid"  # no reservation for the bid (never reserved, or deleted)
    NOTICE_EXPIRED = "notice_expired"  # later than Settings.notice_timeout_s after the bid
    NOTICE_MISMATCH = "notice_mismatch"  # campaign, user, imp, price or time differ from the bid's
    NOTICE_CONFLICT = "notice_conflict"  # contradicts a final notice booked before (loss after billing)
    PRICE_ABOVE_BID = "price_above_bid"  # a clearing price above what we bid
    WRONG_PARTITION = "wrong_partition"  # read from another partition than the one it names


class ScorerError(Exception):
    """Base of every error this package raises on purpose."""


class BadInput(ScorerError):
    """A record that can never be processed as it is: it goes to the dead-letter topic."""

    reason: Reason

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class ConfigError(ScorerError):
    """Settings or model metadata that do not fit together; raised at start-up, never per message."""


class WorkerStalled(ScorerError):
    """Input is waiting on a partition the worker owns, and nothing has moved for too long."""


class InferenceError(ScorerError):
    """Triton could not answer. Subclasses say whether trying again can help."""

    def __init__(self, model: str, status: str, detail: str) -> None:
        super().__init__(f"{model}: {status}: {detail}")
        self.model = model
        self.status = status
        self.detail = detail


class RetryableInference(InferenceError):
    """The server was unavailable, overloaded or too slow: the same request may succeed later."""


class RejectedInference(InferenceError):
    """The server rejected the request itself (bad shape, dtype, size): retrying cannot help."""
