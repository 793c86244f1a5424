"""Dead letters: the original bytes of a record that could not be processed, and why.

A dead letter keeps the original key and value and says where it came from and why in headers,
so it can be inspected and replayed onto its source topic after a fix. The one change made to
the value is PII redaction (e-mails, phone and card numbers, see `streams.pii`): PII never
leaves in clear, not even in a dead letter. `x-dlq-redacted` says what was replaced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from streams.errors import BadInput
from streams.pii import redact_bytes

HEADER_REASON = "x-dlq-reason"
HEADER_ERROR = "x-dlq-error"
HEADER_TOPIC = "x-dlq-topic"
HEADER_PARTITION = "x-dlq-partition"
HEADER_OFFSET = "x-dlq-offset"
HEADER_STAGE = "x-dlq-stage"
HEADER_REDACTED = "x-dlq-redacted"
MAX_ERROR_CHARS = 512


@dataclass(frozen=True)
class RecordMeta:
    """Where an input record came from; what the pure handlers know of Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp_ms: int | None = None  # the record's Kafka timestamp (producer create time)


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(
    meta: RecordMeta, value: bytes | None, error: BadInput, *, stage: str, dlq_topic: str
) -> DeadLetter:
    found: Counter[str] = Counter()
    if value is not None:
        value, found = redact_bytes(value)
    detail, _ = redact_bytes(error.detail[:MAX_ERROR_CHARS].encode("utf-8", errors="replace"))
    headers = [
        *meta.headers,
        (HEADER_REASON, error.reason.value.encode()),
        (HEADER_ERROR, detail),
        (HEADER_TOPIC, meta.topic.encode()),
        (HEADER_PARTITION, str(meta.partition).encode()),
        (HEADER_OFFSET, str(meta.offset).encode()),
        (HEADER_STAGE, stage.encode()),
    ]
    if found:
        headers.append((HEADER_REDACTED, ",".join(f"{k}={n}" for k, n in sorted(found.items())).encode()))
    return DeadLetter(topic=dlq_topic, key=meta.key, value=value, headers=headers)
