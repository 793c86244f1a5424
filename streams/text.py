"""Tokenisation, once, in the worker, with the fast (Rust) tokenizer the encoder was trained with.

Batches are padded to a bucket length (a multiple of 16) rather than to each batch's longest
text: on the GPU profile Triton's dynamic batcher can only merge requests of equal shape, and
a handful of bucket lengths keeps TensorRT's optimisation profiles few.
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
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_len)
        self.max_len = max_len
        pad_id = self._tok.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id

    def encode(self, texts: Sequence[str]) -> TokenBatch:
        encodings = self._tok.encode_batch(list(texts))
        longest = max((len(e.ids) for e in encodings), default=1)
        length = min(self.max_len, -(-longest // BUCKET) * BUCKET)
        ids = np.full((len(encodings), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), length), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
        return TokenBatch(ids, mask, [bool(e.overflowing) for e in encodings])
