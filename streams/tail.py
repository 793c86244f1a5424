"""`python -m streams tail TOPIC`: print a topic's records decoded, headers included, checked
against the contract: kcat that knows our schemas, for someone debugging their consumer.

Records are shown as they are on the topic (dead letters are redacted by the worker, and nothing
is put back). A JSON value is checked the way a consumer should check it: fields the payload
does not define are listed as unknown, which the contract allows, not as errors.

Without `--follow` the read is bounded: it stops at the end offsets the topic had when it
started, after at most `--timeout` seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from streams.contract.catalogue import Channel, DeadLetterHeaders, channel, channels
from streams.errors import ScorerError
from streams.settings import Settings

SHOWN_VALUE_CHARS = 2000


class TailError(ScorerError):
    """The topic cannot be read as asked (it does not exist, or did not reach its end in time)."""


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Decoded:
    """What tail makes of a record: its value (JSON, else text), and what the contract says."""

    record: Record
    value: Any
    problems: list[str]
    unknown: list[str]


def _bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _validate(model: type[Any], obj: Any) -> tuple[list[str], list[str]]:
    """(problems, unknown fields): a field a strict model forbids is an unknown field for a consumer."""
    try:
        model.model_validate(obj)
    except ValidationError as exc:
        problems, unknown = [], []
        for err in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "<root>"
            if err["type"] == "extra_forbidden":
                unknown.append(where)
            else:
                problems.append(f"{where}: {err['msg']}")
        return problems, unknown
    return [], []


def decode(record: Record, chan: Channel) -> Decoded:
    if chan.kind == "dead-letter":
        headers = {name: value.decode("utf-8", errors="replace") for name, value in record.headers}
        problems, _ = _validate(DeadLetterHeaders, headers)
        return Decoded(record, _text(record.value), problems, [])
    if record.value is None:
        return Decoded(record, None, ["no value (a tombstone)"], [])
    try:
        obj = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        return Decoded(record, _text(record.value), [f"not JSON: {exc}"], [])
    if chan.payload is None:
        return Decoded(record, obj, [], [])
    problems, unknown = _validate(chan.payload.model, obj)
    return Decoded(record, obj, problems, unknown)


def _when(timestamp_ms: int) -> str:
    return (
        datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def as_json(d: Decoded, chan: Channel) -> dict[str, Any]:
    r = d.record
    return {
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": _when(r.timestamp_ms),
        "key": _text(r.key),
        "headers": {name: value.decode("utf-8", errors="replace") for name, value in r.headers},
        "payload": "dead-letter"
        if chan.kind == "dead-letter"
        else chan.payload.name
        if chan.payload
        else None,
        "value": d.value,
        "problems": d.problems,
        "unknown_fields": d.unknown,
    }


def render(d: Decoded, chan: Channel) -> str:
    """Human-readable: a head line, the headers, what the contract says, then the value."""
    r = d.record
    lines = [f"{r.topic}[{r.partition}]@{r.offset}  {_when(r.timestamp_ms)}  key={_text(r.key)}"]
    lines += [f"  {name}: {value.decode('utf-8', errors='replace')}" for name, value in r.headers]
    what = "dead letter" if chan.kind == "dead-letter" else chan.payload.name if chan.payload else chan.kind
    verdict = "ok" if not d.problems else f"{len(d.problems)} problem(s): " + "; ".join(d.problems)
    lines.append(f"  {what}: {verdict}")
    if d.unknown:
        lines.append(f"  unknown fields (allowed): {', '.join(d.unknown)}")
    if isinstance(d.value, str | type(None)):
        shown = (
            d.value
            if d.value is None or len(d.value) <= SHOWN_VALUE_CHARS
            else d.value[:SHOWN_VALUE_CHARS] + "…"
        )
        size = 0 if r.value is None else len(r.value)
        lines.append(f"  value ({size} bytes): {shown}")
    else:
        body = orjson.dumps(d.value, option=orjson.OPT_INDENT_2).decode()
        lines += ["  " + line for line in body.splitlines()]
    return "\n".join(lines)


def topic_name(settings: Settings, chan: Channel) -> str:
    if chan.kind == "changelog":
        return f"{settings.faust_app_id}-{chan.base}"
    return settings.topics.name(chan.base)


def read(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    last: int,
    follow: bool,
    timeout_s: float,
) -> Iterator[Record]:
    """The topic's records from the log start (or the last `last` of each partition); then new
    ones if `follow`, else until the end offsets it had at the start."""
    consumer = Consumer(
        settings.confluent_config(
            **{"group.id": f"tail-{uuid.uuid4()}", "enable.auto.commit": False, "enable.partition.eof": True}
        )
    )
    try:
        info = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if info is None or info.error is not None:
            raise TailError(f"topic {topic} does not exist ({info.error if info else 'missing'})")
        ends: dict[int, int] = {}
        assignment = []
        for p in sorted(info.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
            assignment.append(TopicPartition(topic, p, low if from_beginning else max(low, high - last)))
        consumer.assign(assignment)
        pending = {tp.partition for tp in assignment if tp.offset < ends[tp.partition]}
        deadline = time.monotonic() + timeout_s
        while follow or pending:
            if not follow and time.monotonic() > deadline:
                raise TailError(
                    f"{topic}: partitions {sorted(pending)} did not reach their end within {timeout_s:g}s"
                )
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            p, error = msg.partition() or 0, msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(p)
                    continue
                raise TailError(f"{topic}[{p}]: {error}")
            offset = msg.offset() or 0
            if not follow and offset >= ends[p]:
                pending.discard(p)
                continue
            if offset + 1 >= ends[p]:
                pending.discard(p)
            raw_headers = msg.headers() or []
            pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
            yield Record(
                topic=msg.topic() or topic,
                partition=p,
                offset=offset,
                timestamp_ms=msg.timestamp()[1],
                key=msg.key(),
                value=msg.value(),
                headers=[(name, _bytes(value)) for name, value in pairs],
            )
    finally:
        consumer.close()


def main(args: argparse.Namespace) -> int:
    try:
        chan = channel(args.topic)
    except KeyError:
        known = ", ".join(c.base for c in channels())
        print(
            f"unknown topic {args.topic!r}: give its name without the prefix, one of {known}", file=sys.stderr
        )
        return 2
    settings = Settings()
    topic = topic_name(settings, chan)
    shown = 0
    try:
        for record in read(
            settings,
            topic,
            from_beginning=args.from_beginning,
            last=args.last,
            follow=args.follow,
            timeout_s=args.timeout,
        ):
            if args.key is not None and record.key != args.key.encode():
                continue
            decoded = decode(record, chan)
            if args.json:
                print(orjson.dumps(as_json(decoded, chan)).decode(), flush=True)
            else:
                print(render(decoded, chan), flush=True)
            shown += 1
    except TailError as exc:
        print(f"tail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    print(f"{shown} records from {topic}", file=sys.stderr)
    return 0
