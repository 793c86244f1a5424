"""Dead letters: the original bytes of a record that could not be processed, and why.

A dead letter keeps the original key and value and says where it came from and why in headers,
so it can be inspected and replayed onto its source topic after a fix. Two changes can be made:

- PII redaction (e-mails, phone and card numbers, see `streams.pii`) of the value, the key and
  the copied headers: PII never leaves in clear, not even in a dead letter. `x-dlq-redacted`
  says what was replaced.
- Size bounds. A dead letter is the original record plus our headers, so a record close to the
  worker producer's limit (1,000,000 bytes, Faust's `producer_max_request_size`) or the broker's
  would not fit, and a dead letter that cannot be sent stops the worker. A value over
  `MAX_VALUE_BYTES` is cut to that length (`x-dlq-truncated` gives its original length), a key
  over `MAX_KEY_BYTES` likewise (`x-dlq-key-truncated`), and the record's own headers are kept
  up to `MAX_COPIED_HEADER_BYTES` (`x-dlq-headers-dropped` counts the rest). A value of up to
  768 KiB, far above the default `max_message_bytes` (64 KiB), is kept whole.

Headers named `x-dlq-*` on the input (a replayed dead letter) are replaced by ours, not doubled.
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
HEADER_TRUNCATED = "x-dlq-truncated"
HEADER_KEY_TRUNCATED = "x-dlq-key-truncated"
HEADER_HEADERS_DROPPED = "x-dlq-headers-dropped"
HEADER_PREFIX = "x-dlq-"
MAX_ERROR_CHARS = 512
# Together with our own headers (under 1 KiB) these keep a dead letter under 900,000 bytes.
MAX_VALUE_BYTES = 768 * 1024
MAX_KEY_BYTES = 16 * 1024
MAX_COPIED_HEADER_BYTES = 64 * 1024
PII_MARGIN_BYTES = 1024  # longer than any e-mail (254), phone or card number streams.pii matches


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

    def clean(raw: bytes) -> bytes:
        out, seen = redact_bytes(raw)
        found.update(seen)
        return out

    notes: list[tuple[str, bytes]] = []

    def bounded(raw: bytes | None, limit: int, header: str) -> bytes | None:
        """Cut to `limit` bytes (`header` records the original length if cut), redacted. Only
        the part kept is scanned, plus a margin longer than any PII match, so an e-mail or
        card number that starts before the cut is still found whole."""
        if raw is None:
            return None
        out = clean(raw[: limit + PII_MARGIN_BYTES])
        if len(raw) > limit or len(out) > limit:
            notes.append((header, str(len(raw)).encode()))
            return out[:limit]
        return out

    value = bounded(value, MAX_VALUE_BYTES, HEADER_TRUNCATED)
    key = bounded(meta.key, MAX_KEY_BYTES, HEADER_KEY_TRUNCATED)
    copied: list[tuple[str, bytes]] = []
    size = dropped = 0
    for name, data in meta.headers:
        if name.startswith(HEADER_PREFIX):
            continue
        name_bytes = clean(name.encode("utf-8", errors="replace"))
        size += len(name_bytes) + len(data)
        if size > MAX_COPIED_HEADER_BYTES:
            dropped += 1
            continue
        copied.append((name_bytes.decode("utf-8", errors="replace"), clean(data)))
    if dropped:
        notes.append((HEADER_HEADERS_DROPPED, str(dropped).encode()))
    detail, _ = redact_bytes(error.detail[:MAX_ERROR_CHARS].encode("utf-8", errors="replace"))
    headers = [
        *copied,
        (HEADER_REASON, error.reason.value.encode()),
        (HEADER_ERROR, detail),
        (HEADER_TOPIC, meta.topic.encode()),
        (HEADER_PARTITION, str(meta.partition).encode()),
        (HEADER_OFFSET, str(meta.offset).encode()),
        (HEADER_STAGE, stage.encode()),
        *notes,
    ]
    if found:
        headers.append((HEADER_REDACTED, ",".join(f"{k}={n}" for k, n in sorted(found.items())).encode()))
    return DeadLetter(topic=dlq_topic, key=key, value=value, headers=headers)
