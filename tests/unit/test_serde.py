"""Decoding: every way a record can be unusable becomes a BadInput with a reason, nothing else."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.events import MIX, EventFactory, bad_records
from streams.errors import BadInput, Reason
from streams.schemas import BidRequest, ChatMessage, ClickEvent, SocialPost
from streams.serde import decode, encode

MODELS = {"clickstream": ClickEvent, "chat": ChatMessage, "social": SocialPost, "bid-requests": BidRequest}
EXPECTED_REASON = {
    "not_json": Reason.NOT_JSON,
    "truncated_json": Reason.NOT_JSON,
    "invalid_utf8": Reason.NOT_UTF8,
    "not_object": Reason.NOT_OBJECT,
    "wrong_types": Reason.SCHEMA,
    "missing_fields": Reason.SCHEMA,
    "unknown_schema_version": Reason.UNKNOWN_SCHEMA_VERSION,
    "oversized_text": None,  # valid JSON and schema; the size check comes after decoding
}


def test_generated_events_decode_with_the_topic_schemas() -> None:
    factory = EventFactory(seed=1)
    stream = factory.stream(tuple(MIX))
    seen = set()
    for _ in range(400):
        rec = next(stream)
        value = decode(rec.value, MODELS[rec.topic], max_bytes=65536)
        assert value.key.encode() == rec.key  # type: ignore[attr-defined]
        seen.add(rec.topic)
    assert seen == set(MIX)


@pytest.mark.parametrize("topic", list(MIX))
def test_each_bad_record_is_rejected_with_its_reason(topic: str) -> None:
    for rec in bad_records(topic):
        expected = EXPECTED_REASON[rec.kind]
        if expected is None:
            decode(rec.value, MODELS[topic], max_bytes=65536)
            continue
        with pytest.raises(BadInput) as info:
            decode(rec.value, MODELS[topic], max_bytes=65536)
        assert info.value.reason is expected, rec.kind


def test_oversized_record_and_tombstone() -> None:
    with pytest.raises(BadInput) as info:
        decode(b"{" + b" " * 2000 + b"}", ChatMessage, max_bytes=1024)
    assert info.value.reason is Reason.OVERSIZED
    with pytest.raises(BadInput) as info:
        decode(None, ChatMessage, max_bytes=1024)
    assert info.value.reason is Reason.NOT_JSON


def test_schema_error_detail_names_fields_but_not_values() -> None:
    raw = orjson.dumps(
        {
            "schema_version": 1,
            "message_id": "m",
            "conversation_id": "c",
            "user_id": "u",
            "ts": "yesterday at 5",
            "text": "secret@example.com",
        }
    )
    with pytest.raises(BadInput) as info:
        decode(raw, ChatMessage, max_bytes=65536)
    assert "ts" in info.value.detail and "yesterday" not in info.value.detail


def test_boolean_schema_version_is_not_version_one() -> None:
    raw = orjson.dumps({"schema_version": True, "id": "r", "imp": [{"id": "1"}]})
    with pytest.raises(BadInput) as info:
        decode(raw, BidRequest, max_bytes=65536)
    assert info.value.reason is Reason.UNKNOWN_SCHEMA_VERSION


def test_openrtb_request_without_schema_version_is_accepted() -> None:
    req = decode(b'{"id": "r1", "imp": [{"id": "1"}]}', BidRequest, max_bytes=65536)
    assert req.at == 2 and req.cur == ["USD"] and req.imp[0].bidfloor == 0.0  # the spec's defaults


def test_unknown_fields_are_tolerated_on_inputs() -> None:
    raw = orjson.dumps(
        {
            "schema_version": 1,
            "message_id": "m",
            "conversation_id": "c",
            "user_id": "u",
            "ts": "2026-01-01T00:00:00Z",
            "text": "hi",
            "new_field": [1, 2],
        }
    )
    assert decode(raw, ChatMessage, max_bytes=65536).text == "hi"


def test_encode_round_trips() -> None:
    msg = decode(next(EventFactory(seed=2).stream(("chat",))).value, ChatMessage, max_bytes=65536)
    assert decode(encode(msg), ChatMessage, max_bytes=65536) == msg


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=512) | st.text(max_size=256).map(str.encode))
def test_arbitrary_bytes_decode_or_raise_bad_input(raw: bytes) -> None:
    for model in MODELS.values():
        try:
            decode(raw, model, max_bytes=4096)
        except BadInput:
            pass


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    obj=st.dictionaries(
        st.sampled_from(
            [
                "schema_version",
                "id",
                "imp",
                "text",
                "ts",
                "user_id",
                "type",
                "product_id",
                "message_id",
                "conversation_id",
            ]
        ),
        json_values,
    )
)
def test_arbitrary_json_objects_decode_or_raise_bad_input(obj: dict) -> None:
    raw = orjson.dumps(obj)
    for model in MODELS.values():
        try:
            decode(raw, model, max_bytes=65536)
        except BadInput:
            pass
