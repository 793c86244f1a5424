"""Tokenisation with the tokenizer's own padding, checked against the same tokenizer without
padding, padded by hand to the rule in `streams.text` (longest text rounded up to 16)."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer

from streams.settings import Settings
from streams.text import BUCKET, TextTokenizer

TEXTS = [
    "hi",
    "Where is my order 123456? It was due on Monday and nobody answers the phone.",
    "🙂 " * 40,
    "שלום, ההזמנה שלי לא הגיעה",
    "word " * 400,  # cut at max_len
]


def by_hand(texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    tok = Tokenizer.from_file(str(Settings().tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    rows = [tok.encode(t).ids for t in texts]
    longest = max(len(r) for r in rows)
    length = min(max_len, -(-longest // BUCKET) * BUCKET) if max_len % BUCKET == 0 else longest
    pad = tok.token_to_id("[PAD]")
    ids = np.array([r + [pad] * (length - len(r)) for r in rows], dtype=np.int64)
    mask = np.array([[1] * len(r) + [0] * (length - len(r)) for r in rows], dtype=np.int64)
    return ids, mask


@pytest.mark.parametrize("max_len", [128, 64, 100])
@pytest.mark.parametrize("texts", [TEXTS, TEXTS[:1], TEXTS[:2], TEXTS[2:4]])
def test_padding_matches_the_rule(texts: list[str], max_len: int) -> None:
    batch = TextTokenizer(Settings().tokenizer_path, max_len).encode(texts)
    ids, mask = by_hand(texts, max_len)
    assert batch.input_ids.dtype == np.int64 and batch.attention_mask.dtype == np.int64
    np.testing.assert_array_equal(batch.input_ids, ids)
    np.testing.assert_array_equal(batch.attention_mask, mask)
    assert batch.truncated == [len(t.split()) >= max_len for t in texts]


def test_an_empty_batch_has_no_rows() -> None:
    batch = TextTokenizer(Settings().tokenizer_path, 128).encode([])
    assert batch.input_ids.shape[0] == 0 and batch.truncated == []
