"""Decode, route and isolate failures for one batch of one input topic. Kafka-free: the agents
hand in (metadata, bytes) pairs and send whatever comes back.

The checks on a record, cheapest first, each a dead letter with its reason when it fails:
1. its size in bytes (`max_message_bytes`), before any parsing: a 1 MB record is never parsed;
2. UTF-8, JSON, a JSON object, `schema_version`, the schema (`streams.serde.decode`);
3. the length of its text (`max_text_chars`), before the tokenizer sees it;
4. its event time, at most `max_event_skew_s` ahead of the worker's clock.
Texts that pass are cut to the model's `max_seq_len` tokens by the tokenizer (`streams.text`).

A route may answer a record that is dead-lettered as well (`Route.on_invalid`): the bidder owes
every request a response, so a request that fails the schema but names its `id` gets a no-bid too.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from streams.dlq import RecordMeta, dead_letter
from streams.errors import BadInput, Reason, RetryableInference
from streams.handlers.chat import check_text
from streams.handlers.common import Context, Outcome, Record
from streams.pii import redact
from streams.serde import decode

log = logging.getLogger("streams.pipeline")

Handler = Callable[[Sequence[Record], Context], Awaitable[list[Outcome]]]
# A dead-lettered record's answer, beside its dead letter (stage "decode" or "handler"): the
# record's metadata and original bytes, and why it was dead-lettered.
InvalidHook = Callable[[RecordMeta, bytes | None, BadInput, Context], list[Outcome]]


@dataclass(frozen=True)
class Route:
    """How records of one input topic are processed."""

    name: str
    model: type[BaseModel]
    handler: Handler
    text_field: str | None = None  # size-checked before it reaches the tokenizer
    time_field: str | None = None  # event time, checked against the worker's clock
    on_invalid: InvalidHook | None = None  # what a dead-lettered record gets besides its dead letter


def check_event_time(ts: datetime, now: datetime, max_skew_s: float) -> None:
    ahead = (ts - now).total_seconds()
    if ahead > max_skew_s:
        raise BadInput(
            Reason.FUTURE_EVENT_TIME,
            f"event time is {ahead:.0f}s ahead of the worker's clock, limit {max_skew_s:.0f}s",
        )


def where(meta: RecordMeta) -> str:
    return f"{meta.topic}[{meta.partition}]@{meta.offset}"


async def process(
    batch: Sequence[tuple[RecordMeta, bytes | None]], route: Route, ctx: Context
) -> list[Outcome]:
    out: list[Outcome] = []
    good: list[Record] = []
    settings = ctx.settings
    now = ctx.now()  # the wall clock (the producers' clocks are checked against it), as tests set it
    for meta, raw in batch:
        try:
            value = decode(raw, route.model, max_bytes=settings.max_message_bytes)
            if route.text_field is not None:
                check_text(getattr(value, route.text_field), settings.max_text_chars)
            if route.time_field is not None:
                check_event_time(getattr(value, route.time_field), now, settings.max_event_skew_s)
        except BadInput as exc:
            log.warning("%s dead-lettered: %s", where(meta), exc.reason.value)
            out.append(dead_letter(meta, raw, exc, stage="decode", dlq_topic=settings.topics.dlq(meta.topic)))
            if route.on_invalid is not None:
                out.extend(route.on_invalid(meta, raw, exc, ctx))
            continue
        good.append(Record(meta, raw, value))
    if good:
        out.extend(await _run(good, route, ctx))
    return out


async def _run(records: list[Record], route: Route, ctx: Context) -> list[Outcome]:
    """Run the handler on the batch; if it fails with a bug rather than bad input, run it record by
    record so the one poison record goes to the dead-letter topic and its neighbours go through.
    An unavailable model is not a property of the record: that error propagates."""
    try:
        return await route.handler(records, ctx)
    except RetryableInference:
        raise
    except Exception as exc:
        if len(records) == 1:
            return _poison(records[0], exc, route, ctx)
        log.error(
            "%s handler failed on a batch of %d (%s); retrying record by record\n%s",
            route.name,
            len(records),
            redact(repr(exc)),
            "".join(traceback.format_tb(exc.__traceback__)),
        )
    out: list[Outcome] = []
    for record in records:
        try:
            out.extend(await route.handler([record], ctx))
        except RetryableInference:
            raise
        except Exception as exc:
            out.extend(_poison(record, exc, route, ctx))
    return out


def _poison(record: Record, exc: Exception, route: Route, ctx: Context) -> list[Outcome]:
    log.error("%s handler failed on %s: %s", route.name, where(record.meta), redact(repr(exc)))
    error = BadInput(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
    dlq_topic = ctx.settings.topics.dlq(record.meta.topic)
    dead = dead_letter(record.meta, record.raw, error, stage="handler", dlq_topic=dlq_topic)
    answer = route.on_invalid(record.meta, record.raw, error, ctx) if route.on_invalid is not None else []
    return [dead, *answer]
