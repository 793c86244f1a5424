"""`python -m streams tail`: how records are decoded, checked against the contract and printed.
Reading a real topic is covered by tests/integration/test_example_consumer.py."""

from __future__ import annotations

import orjson
import pytest

from streams.__main__ import main
from streams.contract.catalogue import channel
from streams.contract.examples import examples
from streams.settings import Settings
from streams.tail import Record, as_json, decode, render, topic_name

T_MS = 1_772_443_800_125  # 2026-03-02T09:30:00.125Z


def record(topic: str, value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> Record:
    return Record(topic, 1, 41, T_MS, b"u1001", value, headers or [])


SEGMENT = examples()["segment-updates"][0].payload


def test_a_valid_output_is_ok_and_printed_as_indented_json() -> None:
    chan = channel("segment-updates")
    decoded = decode(record("t1-segment-updates", orjson.dumps(SEGMENT)), chan)
    assert decoded.problems == [] and decoded.unknown == []
    text = render(decoded, chan)
    lines = text.splitlines()
    assert lines[0] == "t1-segment-updates[1]@41  2026-03-02T09:30:00.125Z  key=u1001"
    assert lines[1] == "  segment-update: ok"
    assert '    "version": 3,' in lines


def test_an_unknown_field_is_allowed_and_listed() -> None:
    chan = channel("segment-updates")
    decoded = decode(record("segment-updates", orjson.dumps({**SEGMENT, "hysteresis": 2})), chan)
    assert decoded.problems == [] and decoded.unknown == ["hysteresis"]
    assert "  unknown fields (allowed): hysteresis" in render(decoded, chan).splitlines()


def test_a_value_that_breaks_the_contract_is_shown_with_its_problems() -> None:
    chan = channel("segment-updates")
    decoded = decode(record("segment-updates", orjson.dumps({**SEGMENT, "version": "three"})), chan)
    assert decoded.problems == [
        "version: Input should be a valid integer, unable to parse string as an integer"
    ]
    assert "  segment-update: 1 problem(s): version:" in render(decoded, chan)
    broken = decode(record("segment-updates", b"{nope"), chan)
    assert broken.problems[0].startswith("not JSON") and broken.value == "{nope"
    assert decode(record("segment-updates", None), chan).problems == ["no value (a tombstone)"]


def test_a_dead_letter_shows_its_headers_and_original_bytes() -> None:
    chan = channel("chat.dlq")
    example = examples()["chat.dlq"][1]
    assert example.headers is not None
    headers = [(k, v.encode()) for k, v in example.headers.items()]
    decoded = decode(record("chat.dlq", example.payload.encode(), headers), chan)
    assert decoded.problems == []
    text = render(decoded, chan)
    assert "  x-dlq-reason: schema_invalid" in text and "  x-dlq-redacted: email=1" in text
    assert "  dead letter: ok" in text
    assert f"  value ({len(example.payload)} bytes): {example.payload}" in text
    missing = decode(record("chat.dlq", b"x", headers[1:]), chan)
    assert missing.problems == ["x-dlq-reason: Field required"]


def test_json_lines_carry_everything_a_script_needs() -> None:
    chan = channel("cs-replies")
    reply = examples()["cs-replies"][0].payload
    out = as_json(decode(record("cs-replies", orjson.dumps(reply), [("traceparent", b"00-ab")]), chan), chan)
    assert out == {
        "topic": "cs-replies",
        "partition": 1,
        "offset": 41,
        "timestamp": "2026-03-02T09:30:00.125Z",
        "key": "u1001",
        "headers": {"traceparent": "00-ab"},
        "payload": "cs-reply",
        "value": reply,
        "problems": [],
        "unknown_fields": [],
    }


def test_topic_names_take_the_prefix_and_changelogs_the_app_id() -> None:
    settings = Settings(topic_prefix="t1-")
    assert topic_name(settings, channel("chat.dlq")) == "t1-chat.dlq"
    assert topic_name(settings, channel("profiles-changelog")) == "t1-marketing-scorer-profiles-changelog"


def test_an_unknown_topic_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "segment-update"]) == 2
    err = capsys.readouterr().err
    assert "unknown topic 'segment-update'" in err and "segment-updates" in err and "chat.dlq" in err
