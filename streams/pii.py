"""PII redaction: e-mail addresses, phone numbers and payment card numbers never leave in clear.

Applied to every piece of customer text that could reach a log line or a topic (dead letters
included: their value is the original record with only the PII spans replaced). Card numbers
are recognised by the Luhn checksum, so order numbers and amounts are left alone; phone numbers
need at least 9 digits, so short order ids survive too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

# local@domain. The local part starts where a run of its characters starts (the lookbehind): a
# match further into the run would start at the run's beginning anyway, and without it every
# position of a long run of letters or digits rescans the rest of the run, which is quadratic:
# 1 MB of "aaa..." took minutes, blocking the worker while it dead-lettered an oversized record.
# No top-level domain is required: a truncated record that ends in "jane.doe@example.c" still
# holds an address.
EMAIL = re.compile(rb"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*")
# 13-19 digits, optionally grouped by single spaces or dashes (4-4-4-4, 4-6-5, ...)
CARD = re.compile(rb"(?<![\d])(?:\d[ \-]?){12,18}\d(?![\d])")
# + or (, then digits with separators; 9-15 digits in all (checked in _phone)
PHONE = re.compile(rb"(?<![\w+])\+?\(?\d[\d \-().]{7,20}\d(?![\d])")

TOKENS = {"email": b"[EMAIL]", "card": b"[CARD]", "phone": b"[PHONE]"}


def _digits(span: bytes) -> bytes:
    return bytes(c for c in span if 48 <= c <= 57)


def luhn_ok(digits: bytes) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = c - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[bytes]) -> bool:
    digits = _digits(m.group())
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone(m: re.Match[bytes]) -> bool:
    return 9 <= len(_digits(m.group())) <= 15


_RULES: list[tuple[str, re.Pattern[bytes], Callable[[re.Match[bytes]], bool]]] = [
    ("email", EMAIL, lambda m: True),
    ("card", CARD, _card),  # before phone: a card number also looks like a long phone number
    ("phone", PHONE, _phone),
]


def redact_bytes(raw: bytes) -> tuple[bytes, Counter[str]]:
    """Replace PII spans in raw bytes (which need not be valid UTF-8); count what was replaced."""
    found: Counter[str] = Counter()
    for kind, pattern, accept in _RULES:

        def sub(
            m: re.Match[bytes], kind: str = kind, accept: Callable[[re.Match[bytes]], bool] = accept
        ) -> bytes:
            if not accept(m):
                return m.group()
            found[kind] += 1
            return TOKENS[kind]

        raw = pattern.sub(sub, raw)
    return raw, found


def redact(text: str) -> str:
    out, _ = redact_bytes(text.encode("utf-8"))
    return out.decode("utf-8")
