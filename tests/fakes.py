"""Deterministic stand-ins for the models, for unit tests of pure logic only. Integration tests
never use these: they talk to the real Triton."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from streams.errors import RejectedInference
from streams.inference import Recommendations, TextScores

N_INTENTS = 13


def _unit(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


class FakeModels:
    """Sentiment from keywords, intent from a fixed table, recommendations = popularity list."""

    def __init__(self, intents: dict[str, int] | None = None, reject: set[str] | None = None) -> None:
        self.intents = intents or {}
        self.reject = reject or set()
        self.text_calls: list[int] = []
        self.rec_calls: list[list[list[int]]] = []
        self.p_positive: dict[str, float] = {}  # overrides the keyword rule per text

    async def score_texts(self, texts: Sequence[str], *, deadline_s: float | None = None) -> TextScores:
        self.text_calls.append(len(texts))
        if any(t in self.reject for t in texts):
            raise RejectedInference("text_encoder", "INVALID_ARGUMENT", "rejected by the fake")
        p = np.array(
            [
                self.p_positive.get(t, 0.05 if "worst" in t or "!!!" in t else 0.9 if "love" in t else 0.5)
                for t in texts
            ]
        )
        intents = np.full((len(texts), N_INTENTS), 0.01, dtype=np.float32)
        for row, text in enumerate(texts):
            intents[row, self.intents.get(text, 12)] = 0.88
        emb = np.stack([np.full(384, _unit(t), dtype=np.float32) for t in texts])
        return TextScores(p_positive=p, intent_probs=intents, embedding=emb, truncated=[False] * len(texts))

    async def recommend(
        self, histories: Sequence[Sequence[int]], *, deadline_s: float | None = None
    ) -> Recommendations:
        self.rec_calls.append([list(h) for h in histories])
        items = np.tile(np.arange(100, 120, dtype=np.int64), (len(histories), 1))
        scores = np.tile(np.linspace(0.02, 0.001, 20, dtype=np.float32), (len(histories), 1))
        return Recommendations(items=items, scores=scores)
