"""PII never leaves in clear: a run with e-mails, phone and card numbers in chat and social texts,
valid and dead-lettered (in values, keys and headers, in records of every size up to ~1 MB), then
a scan of every topic the worker wrote under this test's prefix: outputs, the internal topic,
every dead-letter topic and the tables' changelogs, values, keys and headers."""

from __future__ import annotations

import re

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from producers.hostile import HUGE_RECORD_BYTES, Case, ordinary, produce_cases
from stack.observe import TopicReader, wait_caught_up
from streams.dlq import HEADER_REDACTED, MAX_VALUE_BYTES
from streams.errors import Reason
from streams.pii import redact
from tests.integration.conftest import Scorer

pytestmark = pytest.mark.integration

CATCH_UP_S = 180.0
EMAILS = ("jane.doe+orders@example.co.uk", "j_smith@mail.example.com")
PHONES = ("+44 7700 900123", "(555) 123-4567", "+1-202-555-0175")
CARDS = ("4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "4012888888881881")
SECRETS = (*EMAILS, *PHONES, *CARDS)
TEXTS = (
    f"Hi, please mail me at {EMAILS[0]} or call {PHONES[0]} about my refund",
    f"my card {CARDS[0]} was charged twice, reach me on {PHONES[1]}",
    f"use {CARDS[1]} instead and send the invoice to {EMAILS[1]}",
    f"@freshcart charged my amex {CARDS[2]} again. call me {PHONES[2]}!",
    f"card number {CARDS[3]}, email {EMAILS[0]}",
)


def forms(secret: str) -> set[bytes]:
    """The ways a secret could show up: as written, its digits alone, an e-mail's local part."""
    out = {secret.encode()}
    if "@" in secret:
        out.add(secret.split("@")[0].encode())
    else:
        out.add(re.sub(r"\D", "", secret).encode())
    return out


def test_every_secret_is_one_the_redactor_knows() -> None:
    for secret in SECRETS:
        assert secret not in redact(f"x {secret} y"), secret


def records() -> list[Case]:
    """Valid and bad chat and social records carrying the secrets, and a few others besides."""
    out: list[Case] = []

    def add(
        topic: str,
        ident: str,
        value: bytes,
        reason: Reason | None,
        key: bytes | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        out.append(Case(topic, ident, key or f"u-{ident}".encode(), value, reason, ident, headers))

    for i, text in enumerate(TEXTS):
        for topic in ("chat", "social"):
            case = ordinary(topic, f"pii-{topic}-{i}", text=text)
            out.append(case)
            body = orjson.loads(case.value or b"")
            # the same text in records that can never be processed
            raw = orjson.dumps(body)
            add(topic, f"pii-{topic}-{i}-cut", raw[:-5], Reason.NOT_JSON)
            add(
                topic,
                f"pii-{topic}-{i}-v9",
                orjson.dumps({**body, "schema_version": 9}),
                Reason.UNKNOWN_SCHEMA_VERSION,
            )
            add(topic, f"pii-{topic}-{i}-ts", orjson.dumps({**body, "ts": "soon"}), Reason.SCHEMA)
            broken = raw.replace(text.encode(), text.encode() + b" \xff\xc0")
            add(topic, f"pii-{topic}-{i}-utf8", broken, Reason.NOT_UTF8)
            # cut inside the last address, in its domain: "...@example.c"
            ends = orjson.dumps({**body, "text": f"write to {EMAILS[0]}"})
            add(topic, f"pii-{topic}-{i}-tld", ends[: ends.index(b"example.co.uk") + 9], Reason.NOT_JSON)
            long_text = f"{text} " + "blah " * 500 + text
            add(topic, f"pii-{topic}-{i}-long", orjson.dumps({**body, "text": long_text}), Reason.OVERSIZED)
    body = orjson.loads(ordinary("chat", "pii-chat-huge").value or b"")
    head = orjson.dumps({**body, "text": TEXTS[0] + " "})
    # ~1 MB: secrets at the start, in the middle, at the end, and straddling the cut at MAX_VALUE_BYTES
    straddle = f" {EMAILS[1]} {CARDS[3]} ".encode()
    filler = MAX_VALUE_BYTES - len(head) - len(straddle) // 2
    middle = (
        b"z" * (filler // 2) + f" {PHONES[2]} ".encode() + b"z" * (filler - filler // 2 - len(PHONES[2]) - 2)
    )
    tail = f" {TEXTS[1]}".encode() + b'"}'
    pad = b"w" * (HUGE_RECORD_BYTES - (len(head) - 2) - len(middle) - len(straddle) - len(tail))
    huge = head[:-2] + middle + straddle + pad + tail
    assert len(huge) == HUGE_RECORD_BYTES
    add("chat", "pii-chat-huge", huge, Reason.OVERSIZED)
    # secrets in the key and headers of a bad record, and of a valid one (whose are never copied)
    add(
        "chat",
        "pii-key",
        b"not json",
        Reason.NOT_JSON,
        key=EMAILS[0].encode(),
        headers=(("reply-to", PHONES[0].encode()),),
    )
    valid = ordinary("chat", "pii-valid-key", text="hello, where is my parcel")
    out.append(
        Case(
            "chat",
            "pii-valid-key",
            CARDS[0].encode(),
            valid.value,
            None,
            valid.ident,
            (("email", EMAILS[1].encode()),),
        )
    )
    # elsewhere: a click's search query and a bid request's page URL (neither is ever echoed)
    out.append(ordinary("clickstream", "pii-click", text=f"refund {EMAILS[0]}"))
    bid = orjson.loads(ordinary("bid-requests", "pii-bid").value or b"")
    bid["site"]["page"] = f"https://recipes.example/?email={EMAILS[1]}&tel={PHONES[1]}"
    add("bid-requests", "pii-bid", orjson.dumps(bid), None)
    add("bid-requests", "pii-bid-bad", orjson.dumps(bid)[:-1], Reason.NOT_JSON)
    return out


def test_no_topic_the_worker_writes_holds_pii_in_clear(scorer: Scorer) -> None:
    settings, topics = scorer.settings, scorer.settings.topics
    sent = records()
    report = produce_cases(settings, sent)
    assert report.failed == 0, report.summary()
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)

    # every topic of this test's prefix except the inputs: outputs, internal, dead letters, changelogs
    listed = AdminClient(settings.confluent_config()).list_topics(timeout=10).topics
    scanned = sorted(t for t in listed if t.startswith(settings.topic_prefix) and t not in topics.inputs)
    assert set(scanned) >= {*topics.outputs, *topics.internal, *topics.dead_letters}
    assert any(t.endswith("-changelog") for t in scanned), scanned
    with TopicReader(settings, scanned) as reader:
        reader.read_to_end(timeout=60)
    scorer.alive()

    # the run did what it should, so the scan below looks at real outputs and dead letters
    bad = [c for c in sent if not c.valid]
    dead = [r for t in topics.dead_letters for r in reader.by_topic(t)]
    assert len(dead) == len(bad), (len(dead), len(bad))
    assert sum(HEADER_REDACTED in d.headers for d in dead) == len(bad)  # each had PII to replace
    replied = {orjson.loads(r.value or b"")["in_reply_to"] for r in reader.by_topic(topics.cs_replies)}
    assert replied >= {c.ident for c in sent if c.valid and c.topic == "chat"}
    scored = {orjson.loads(r.value or b"")["post_id"] for r in reader.by_topic(topics.social_scored)}
    assert scored >= {c.ident for c in sent if c.valid and c.topic == "social"}

    needles = {form: secret for secret in SECRETS for form in forms(secret)}
    leaks = []
    for record in reader.records:
        parts = [record.key or b"", record.value or b""]
        parts += [p for name, value in record.headers.items() for p in (name.encode(), value)]
        for part in parts:
            for needle, secret in needles.items():
                if needle in part:
                    leaks.append(
                        f"{record.topic}[{record.partition}]@{record.offset}: {secret!r} as {needle!r}"
                    )
    assert not leaks, "PII in clear:\n" + "\n".join(sorted(set(leaks))[:30])
