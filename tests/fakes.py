"""Deterministic stand-ins for the models, for unit tests of pure logic only. Integration tests
never use these: they talk to the real Triton."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

import triton_models
from streams.errors import RejectedInference
from streams.inference import Recommendations, TextScores
from streams.labels import ModelVersion, TextLabels, text_labels

N_INTENTS = 13
# The fake encoder's labels: the repository's (the real worker reads them from the served card).
LABELS: TextLabels = text_labels(json.loads(triton_models.LABELS_FILE.read_text()))
TEXT_MODEL = ModelVersion("text_encoder", 1)
REC_MODEL = ModelVersion("recommender", 1)


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
        self.text_model = TEXT_MODEL  # the version that "answers"; a test may swap it
        self.labels = LABELS

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
        return TextScores(
            p_positive=p,
            intent_probs=intents,
            embedding=emb,
            truncated=[False] * len(texts),
            model=self.text_model,
            labels=self.labels,
        )

    async def recommend(
        self, histories: Sequence[Sequence[int]], *, deadline_s: float | None = None
    ) -> Recommendations:
        self.rec_calls.append([list(h) for h in histories])
        items = np.tile(np.arange(100, 120, dtype=np.int64), (len(histories), 1))
        scores = np.tile(np.linspace(0.02, 0.001, 20, dtype=np.float32), (len(histories), 1))
        return Recommendations(items=items, scores=scores, model=REC_MODEL)


def triton_answer(arrays: dict[str, np.ndarray], version: int = 1) -> Any:
    """What tritonclient's InferResult offers the worker: the outputs and the version that answered."""
    response = SimpleNamespace(model_version=str(version), outputs=[SimpleNamespace(name=n) for n in arrays])
    return SimpleNamespace(as_numpy=arrays.get, get_response=lambda: response)


def model_config(model: str, cards: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A served model config as get_model_config(as_json=True) returns it, with version cards."""
    parameters = {f"card.{v}": {"string_value": json.dumps(card)} for v, card in cards.items()}
    return {"config": {"name": model, "parameters": parameters}}


def recommender_answer(rows: int, version: int = 1) -> Any:
    items = np.zeros((rows, 20), np.int64)
    return triton_answer({"top_items": items, "top_scores": np.zeros((rows, 20), np.float32)}, version)


class ConfigReads:
    """The get_model_config half of a stand-in gRPC client: every version has a card."""

    def __init__(self) -> None:
        self.config_reads: list[tuple[str, str]] = []

    async def get_model_config(self, model: str, version: str = "", as_json: bool = False) -> Any:
        self.config_reads.append((model, version))
        card: dict[str, Any] = {"version": int(version or 1)}
        if model == "text_encoder":
            card["labels"] = json.loads(triton_models.LABELS_FILE.read_text())
        return model_config(model, {int(version or 1): card})
