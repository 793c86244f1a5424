"""Tokenisation, once, in the worker, with the fast (Rust) tokenizer the encoder was trained with.

A batch is padded to its longest text rounded up to a multiple of 16 tokens (at most
`max_len`), by the tokenizer itself: on the GPU profile Triton's dynamic batcher can only merge
requests of equal shape, and a handful of lengths keeps TensorRT's optimisation profiles few.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from streams.errors import ConfigError

BUCKET = 16


@dataclass(frozen=True)
class TokenBatch:
    input_ids: np.ndarray  # int64 [batch, length]
    attention_mask: np.ndarray  # int64 [batch, length]
    truncated: list[bool]


class TextTokenizer:
    def __init__(self, path: Path, max_len: int) -> None:
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for a missing or bad file
            raise ConfigError(f"cannot load tokenizer from {path}: {exc}") from exc
        self._tok.enable_truncation(max_length=max_len)
        self.max_len = max_len
        pad_id = self._tok.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id
        # Rounding up must not pass max_len: with a max_len that is not a multiple of the
        # bucket, batches are padded to their longest text only.
        self._tok.enable_padding(
            pad_id=self.pad_id,
            pad_token="[PAD]",
            pad_to_multiple_of=BUCKET if max_len % BUCKET == 0 else None,
        )

    def encode(self, texts: Sequence[str]) -> TokenBatch:
        if not texts:
            empty = np.zeros((0, BUCKET), dtype=np.int64)
            return TokenBatch(empty, empty.copy(), [])
        encodings = self._tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return TokenBatch(ids, mask, [bool(e.overflowing) for e in encodings])
