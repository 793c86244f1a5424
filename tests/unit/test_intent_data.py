"""The hand-written intent dataset and the reply catalogue stay well formed.

See triton_models/data/INTENTS.md for the label boundaries; this only checks structure, counts,
uniqueness, that the test split is not a near-copy of train/valid, and the replies.json schema.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from difflib import SequenceMatcher
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_model_configs import INTENTS

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "triton_models" / "data" / "intents.jsonl"
REPLIES = ROOT / "config" / "replies.json"
LABELS_JSON = ROOT / "triton_models" / "text_encoder" / "labels.json"

LABELS = INTENTS  # the exact label set, pinned once in test_model_configs
PER_SPLIT = {"train": 75, "valid": 10, "test": 15}
NO_REPLY = {"human_agent", "other"}
ESCALATE = {"never", "if_negative", "always"}
NEAR_DUPLICATE = 0.9


def norm(text: str) -> str:
    return " ".join(text.lower().split())


@cache
def rows() -> tuple[dict[str, Any], ...]:
    out = []
    for n, line in enumerate(DATA.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"line {n} is blank"
        out.append(json.loads(line))
    return tuple(out)


@cache
def replies() -> tuple[dict[str, Any], ...]:
    doc = json.loads(REPLIES.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and set(doc) == {"replies"}
    assert isinstance(doc["replies"], list)
    return tuple(doc["replies"])


def test_labels_match_the_model_contract() -> None:
    assert json.loads(LABELS_JSON.read_text(encoding="utf-8"))["intents"] == LABELS


def test_rows_are_well_formed() -> None:
    for r in rows():
        assert set(r) == {"text", "intent", "split"}, r
        assert isinstance(r["text"], str) and r["text"] == r["text"].strip() and r["text"], r
        assert "\n" not in r["text"], r
        assert r["intent"] in LABELS, r
        assert r["split"] in PER_SPLIT, r


def test_exactly_the_labels_and_the_counts_per_split() -> None:
    counts = Counter((r["intent"], r["split"]) for r in rows())
    assert {intent for intent, _ in counts} == set(LABELS)
    for label in LABELS:
        for split, n in PER_SPLIT.items():
            assert counts[label, split] == n, (label, split, counts[label, split])
    assert len(rows()) == len(LABELS) * sum(PER_SPLIT.values()) == 1300


def test_no_duplicate_texts() -> None:
    counts = Counter(norm(r["text"]) for r in rows())
    assert [t for t, n in counts.items() if n > 1] == []


def test_test_split_is_not_a_near_copy_of_train_or_valid() -> None:
    seen = [norm(r["text"]) for r in rows() if r["split"] != "test"]
    exact = set(seen)
    bad = []
    matcher = SequenceMatcher(autojunk=False)
    for r in rows():
        if r["split"] != "test":
            continue
        t = norm(r["text"])
        assert t not in exact, r
        matcher.set_seq2(t)  # seq2 is the one SequenceMatcher caches
        for s in seen:
            # ratio <= 2*min/(len sum): skip pairs whose lengths alone rule out >= 0.9
            if 2 * min(len(s), len(t)) < NEAR_DUPLICATE * (len(s) + len(t)):
                continue
            matcher.set_seq1(s)
            if (
                matcher.real_quick_ratio() >= NEAR_DUPLICATE
                and matcher.quick_ratio() >= NEAR_DUPLICATE
                and matcher.ratio() >= NEAR_DUPLICATE
            ):
                bad.append((r["text"], s))
    assert bad == []


def test_replies_schema() -> None:
    ids = [r["id"] for r in replies()]
    assert len(ids) == len(set(ids)), "reply ids must be unique"
    for r in replies():
        assert set(r) <= {"id", "intent", "text", "escalate", "needs"}, r
        assert {"id", "intent", "text", "escalate"} <= set(r), r
        assert isinstance(r["id"], str) and re.fullmatch(r"[a-z_]+\.[a-z_]+", r["id"]), r
        assert r["id"].split(".")[0] == r["intent"], r
        assert r["intent"] in LABELS and r["intent"] not in NO_REPLY, r
        assert isinstance(r["text"], str) and r["text"].strip(), r
        assert r["escalate"] in ESCALATE, r
        needs = r.get("needs", [])
        assert isinstance(needs, list) and all(isinstance(k, str) and k for k in needs), r
        placeholders = set(re.findall(r"\{([^{}]*)\}", r["text"]))
        assert placeholders == set(needs), (r["id"], placeholders, needs)


@pytest.mark.parametrize("label", [label for label in LABELS if label not in NO_REPLY])
def test_every_answerable_intent_has_two_to_four_replies(label: str) -> None:
    mine = [r for r in replies() if r["intent"] == label]
    assert 2 <= len(mine) <= 4, (label, len(mine))
    assert any(not r.get("needs") for r in mine), f"{label} needs a reply that works without context"
