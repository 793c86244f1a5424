"""The hand-written in-domain sentiment posts stay well formed, and the test split stays held out.

See triton_models/data/SENTIMENT.md for how they were written and the label rules; this checks
structure, counts and balance, uniqueness, and that no test post is a near-copy of a train post
(a brand swapped into the same sentence would score well above the threshold).
"""

from __future__ import annotations

import json
from collections import Counter
from difflib import SequenceMatcher
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "triton_models" / "data"
FILES = {"train": DATA / "sentiment_train.jsonl", "test": DATA / "sentiment_test.jsonl"}
LABELS = {"positive", "negative", "neutral"}
MIN_ROWS = {"train": 400, "test": 150}
# Stricter than the intents' 0.9: these posts are short, so a swapped brand name alone
# moves the ratio by less than 0.1.
NEAR_DUPLICATE = 0.85


def norm(text: str) -> str:
    return " ".join(text.lower().split())


@cache
def rows(split: str) -> tuple[dict[str, Any], ...]:
    out = []
    for n, line in enumerate(FILES[split].read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{split} line {n} is blank"
        out.append(json.loads(line))
    return tuple(out)


def near_copies(test: list[str], train: list[str], threshold: float) -> list[tuple[str, str]]:
    bad = []
    matcher = SequenceMatcher(autojunk=False)
    for t in test:
        matcher.set_seq2(t)  # seq2 is the one SequenceMatcher caches
        for s in train:
            # ratio <= 2*min/(len sum): skip pairs whose lengths alone rule out the threshold
            if 2 * min(len(s), len(t)) < threshold * (len(s) + len(t)):
                continue
            matcher.set_seq1(s)
            if (
                matcher.real_quick_ratio() >= threshold
                and matcher.quick_ratio() >= threshold
                and matcher.ratio() >= threshold
            ):
                bad.append((t, s))
    return bad


@pytest.mark.parametrize("split", sorted(FILES))
def test_rows_are_well_formed(split: str) -> None:
    for r in rows(split):
        assert set(r) == {"text", "sentiment"}, r
        assert isinstance(r["text"], str) and r["text"] == r["text"].strip() and r["text"], r
        assert "\n" not in r["text"], r
        assert r["sentiment"] in LABELS, r


@pytest.mark.parametrize("split", sorted(FILES))
def test_counts_and_balance(split: str) -> None:
    counts = Counter(r["sentiment"] for r in rows(split))
    assert len(rows(split)) >= MIN_ROWS[split]
    # positive and negative within 10% of each other; neutral at least a fifth of the split
    assert abs(counts["positive"] - counts["negative"]) <= 0.1 * counts["positive"], counts
    assert counts["neutral"] >= len(rows(split)) / 5, counts


def test_no_duplicate_texts_within_or_across_splits() -> None:
    counts = Counter(norm(r["text"]) for split in FILES for r in rows(split))
    assert [t for t, n in counts.items() if n > 1] == []


def test_test_split_is_not_a_near_copy_of_train() -> None:
    test = [norm(r["text"]) for r in rows("test")]
    train = [norm(r["text"]) for r in rows("train")]
    assert near_copies(test, train, NEAR_DUPLICATE) == []


def test_the_near_copy_check_catches_a_brand_swap() -> None:
    """The check itself must fire on the kind of leak it exists for."""
    train = [norm("my airpods died after 11 months. 11. months.")]
    swapped = [norm("my earbuds died after 11 months. 11. months.")]
    unrelated = [norm("Does the Brompton fold small enough for a train luggage rack?")]
    assert near_copies(swapped, train, NEAR_DUPLICATE) == [(swapped[0], train[0])]
    assert near_copies(unrelated, train, NEAR_DUPLICATE) == []
