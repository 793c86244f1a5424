"""The request/reply convention between the HTTP gateway and the worker, over Kafka.

The gateway writes an exchange's BidRequest to `bid-requests` (keyed like every bid request, so
it reaches the worker that owns the user's partition) with these headers. The worker answers a
record that carries them on `bid-replies` instead of `ad-bids`, with the correlation header
copied; the gateway, which reads `bid-replies`, answers the HTTP request and writes what it
answered to `ad-bids`. A record without them (a producer writing to Kafka directly) is answered
on `ad-bids` as before.
"""

from __future__ import annotations

from collections.abc import Sequence

HEADER_GATEWAY = "ms-gateway"  # the gateway instance waiting for the answer
HEADER_CORRELATION = "ms-corr"  # its id for the HTTP request
HEADER_DEADLINE_MS = "ms-deadline-ms"  # epoch ms by which the answer must be out (tmax from arrival)
# On a request the gateway found invalid and answered itself (400): the worker dead-letters it
# as any invalid record and sends no answer of its own.
HEADER_ANSWERED = "ms-answered"


def header(headers: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def deadline_ms(headers: Sequence[tuple[str, bytes]]) -> int | None:
    raw = header(headers, HEADER_DEADLINE_MS)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def answered(headers: Sequence[tuple[str, bytes]]) -> bool:
    return header(headers, HEADER_ANSWERED) is not None


def reply_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]] | None:
    """The headers of the answer on bid-replies, or None for a record not from the gateway."""
    gateway, corr = header(headers, HEADER_GATEWAY), header(headers, HEADER_CORRELATION)
    if gateway is None or corr is None:
        return None
    return [(HEADER_GATEWAY, gateway), (HEADER_CORRELATION, corr)]
