"""The hostile corpus (producers/hostile.py) on the real stack: Apache Kafka, Triton and a worker
process. Each bad record ends in `<topic>.dlq` with its original bytes and reason, each valid one
(hostile or ordinary, interleaved) gets its output, nothing echoes the hostile texts, and the
worker is still running at the end."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from producers.hostile import HUGE_RECORD_BYTES, MUST_NOT_ECHO, TOPICS, Case, corpus, ordinary, produce_cases
from stack.observe import TopicReader, wait_caught_up
from streams.dlq import HEADER_REASON, HEADER_STAGE, HEADER_TOPIC, HEADER_TRUNCATED, MAX_VALUE_BYTES
from tests.integration.conftest import Scorer

pytestmark = pytest.mark.integration

CATCH_UP_S = 240.0  # ~480 records, a third of them through the CPU encoder, on a busy 2-core machine


def interleaved(topic: str, cases: list[Case]) -> list[Case]:
    """An ordinary record before each hostile one and one after the last."""
    out: list[Case] = []
    for i, case in enumerate(cases):
        out += [ordinary(topic, f"n-{topic[:5]}-{i}"), case]
    return [*out, ordinary(topic, f"n-{topic[:5]}-last")]


def test_hostile_records_are_dead_lettered_and_their_neighbours_processed(scorer: Scorer) -> None:
    settings, topics = scorer.settings, scorer.settings.topics
    sent = [
        case
        for topic in TOPICS
        for case in interleaved(
            topic,
            corpus(
                topic,
                max_message_bytes=settings.max_message_bytes,
                max_text_chars=settings.max_text_chars,
                max_event_skew_s=settings.max_event_skew_s,
            ),
        )
    ]
    report = produce_cases(settings, sent)
    assert report.failed == 0, report.summary()
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)
    written = [*topics.outputs, *topics.internal, *topics.dead_letters]
    with TopicReader(settings, written) as reader:
        reader.read_to_end(timeout=60)
    scorer.alive()  # nothing in the corpus took the worker down

    # every valid record, hostile or ordinary, has its output
    parsed = {
        t: [orjson.loads(r.value or b"") for r in reader.by_topic(t)]
        for t in (*topics.outputs, *topics.internal)
    }
    missing = []
    for case in (c for c in sent if c.valid):
        out_topic, name, value = case.answer
        if not any(o.get(name) == value for o in parsed[topics.name(out_topic)]):
            missing.append(f"{case.topic}/{case.kind}")
    assert not missing, f"valid records without their output: {missing}"

    # every bad record is in its topic's dead-letter topic: original bytes (PII-free here, so
    # unchanged; cut at MAX_VALUE_BYTES for the ~1 MB ones), key, reason; nothing else is
    for topic in TOPICS:
        bad = [c for c in sent if c.topic == topic and not c.valid]
        dead = reader.by_topic(topics.dlq(topics.name(topic)))
        got = Counter((d.key, d.value, d.headers.get(HEADER_REASON, b"").decode()) for d in dead)
        want = Counter((c.key, c.dead_letter_value, c.reason.value) for c in bad if c.reason is not None)
        assert got == want, (
            f"{topic}: missing {sorted((v or b'')[:60] for _, v, _ in (want - got))}, "
            f"unexpected {sorted(((v or b'')[:60], r) for _, v, r in (got - want))}"
        )
        for d in dead:
            assert d.headers[HEADER_TOPIC] == topics.name(topic).encode()
            assert d.headers[HEADER_STAGE] == b"decode", (topic, d.headers)
        huge = [d for d in dead if d.headers.get(HEADER_TRUNCATED)]
        assert [int(d.headers[HEADER_TRUNCATED]) for d in huge] == [HUGE_RECORD_BYTES]
        assert [len(d.value or b"") for d in huge] == [MAX_VALUE_BYTES]
    assert not reader.by_topic(topics.dlq(topics.social_scored)), "scored posts are ours: never bad"

    # the customer's text is never echoed, however it is dressed up
    for record in reader.records:
        if record.topic in topics.dead_letters:
            continue
        for needle in MUST_NOT_ECHO:
            assert needle.encode() not in (record.value or b""), (record.topic, needle)
