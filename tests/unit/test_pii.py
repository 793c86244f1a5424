"""PII redaction: what must go, and what must stay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.pii import luhn_ok, redact, redact_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe+shop@example.co.uk please", "mail me at [EMAIL] please"),
        ("call +44 7700 900123 after 5", "call [PHONE] after 5"),
        ("my number is (555) 123-4567", "my number is [PHONE]"),
        ("card 4111 1111 1111 1111 was charged", "card [CARD] was charged"),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("amex 378282246310005 ok", "amex [CARD] ok"),
    ],
)
def test_pii_is_replaced(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "where is order 55123?",
        "I paid 1299.99 EUR on 2026-11-20",
        "tracking 1Z999AA10123456784",  # letters inside: not a card, not a phone
        "order #20261120 from 12/11",
        "4111 1111 1111 1112 is not a valid card",  # fails Luhn: left alone as a card...
    ],
)
def test_ordinary_numbers_survive(text: str) -> None:
    if "not a valid card" in text:
        assert "[CARD]" not in redact(text)
    else:
        assert redact(text) == text


def test_bytes_that_are_not_utf8_are_redacted_too() -> None:
    out, found = redact_bytes(b"\xff\xfe bob@example.com \xff")
    assert out == b"\xff\xfe [EMAIL] \xff" and found == {"email": 1}


def test_luhn() -> None:
    assert luhn_ok(b"4111111111111111") and not luhn_ok(b"4111111111111112")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_redaction_never_fails_and_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
