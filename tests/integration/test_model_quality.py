"""The served text encoder scores what its card says, recomputed here from Triton's answers.

Every figure is computed in this test: the sentiment, intent and embedding outputs come from the
session's real Triton (tokenised by `oracle._encode`, not through `streams.text`), the reference
embedding from all-MiniLM-L6-v2 run here with transformers and a mean pooling written out below
(not through `triton_models`), and accuracy, macro-F1, the band shares and cosines by hand. The
bounds are the served version's card (the build's own evaluation in torch, fp32) less an
allowance for the served file: 0.5 point for fp32 (ONNX against torch, rounding), 1.5 points
when the CPU profile serves INT8 (its target is <= 1 point of loss on every test set).

On the full build (`make test MODEL_TRAINING=full`, or wherever the full fine-tune is served)
the README's figures are asserted too (`README_FULL`); CI builds the fast variant and checks
its card.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pytest

import triton_models
from stack.local import LocalStack
from tests.integration.oracle import _encode
from triton_models import configs, datasets

pytestmark = pytest.mark.integration

# The full fine-tune's figures as the README states them (test splits; cosine: valid sets).
README_FULL = {
    "sentiment_test_accuracy": 0.834,
    "intent_test_macro_f1": 0.934,
    "polar_accuracy": 0.882,
    "polar_inside_band": 0.082,
    "neutral_inside_band": 0.889,
    "embedding_cosine": 0.933,
}
CHUNK = 64


def _served_is_int8() -> bool:
    cfg = configs.load_config(triton_models.CPU_REPOSITORY / triton_models.TEXT_ENCODER / "config.pbtxt")
    return "int8" in cfg.parameters[configs.PARAM_ONNX].string_value


def _served(grpc_url: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [_encode(grpc_url, texts[i : i + CHUNK]) for i in range(0, len(texts), CHUNK)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]


@cache
def _minilm() -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = triton_models.minilm_path()
    torch.set_num_threads(2)
    return AutoTokenizer.from_pretrained(str(path)), AutoModel.from_pretrained(str(path)).eval()


def _pretrained(texts: Sequence[str]) -> np.ndarray:
    """all-MiniLM-L6-v2's sentence embedding: mean of the last hidden states over real tokens, L2."""
    import torch

    tokenizer, model = _minilm()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), CHUNK):
            batch = tokenizer(
                list(texts[i : i + CHUNK]), padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(out)


def _macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = int(np.sum((predicted == c) & (truth == c)))
        fp = int(np.sum((predicted == c) & (truth != c)))
        fn = int(np.sum((predicted != c) & (truth == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def test_served_text_encoder_scores_what_its_card_says(local_stack: LocalStack) -> None:
    url = local_stack.settings().triton_grpc_url
    version = triton_models.current_version(triton_models.TEXT_ENCODER)
    card = triton_models.load_card(triton_models.TEXT_ENCODER, version)
    assert card, f"text_encoder v{version} has no card"
    details, labels, training = card["details"], card["labels"], card.get("training")
    allowance = 0.015 if _served_is_int8() else 0.005
    names = labels["intents"]
    low, high = labels["neutral_band"]
    measured: dict[str, float] = {}

    rt = [e for e in datasets.load_sentiment().examples if e.split == "test"]
    p_rt, _, _ = _served(url, [e.text for e in rt])
    measured["sentiment_test_accuracy"] = float(np.mean((p_rt > 0.5) == np.array([e.label for e in rt])))

    intents = [e for e in datasets.load_intents(names) if e.split == "test"]
    _, probs, _ = _served(url, [e.text for e in intents])
    truth = np.array([e.label for e in intents])
    measured["intent_test_macro_f1"] = _macro_f1(truth, probs.argmax(1), len(names))

    want = {k: float(details[k]) for k in ("sentiment_test_accuracy", "intent_test_macro_f1")}
    for key in want:
        assert measured[key] >= want[key] - allowance, (key, measured[key], "card", want[key], training)

    posts = details.get("in_domain_test")
    cosines = details.get("embedding_cosine_to_minilm")
    if posts is None or cosines is None:
        assert training == "quick", (
            f"a {training} build's card must carry the in-domain and embedding figures"
        )
        return  # the quick model predates them: frozen MiniLM, its embedding is MiniLM's own

    test_posts = [e for e in datasets.load_posts() if e.split == "test"]
    p_post, _, _ = _served(url, [e.text for e in test_posts])
    tone = np.array([e.label for e in test_posts])
    polar, inside = tone != datasets.NEUTRAL, (p_post >= low) & (p_post <= high)
    measured["polar_accuracy"] = float(np.mean((p_post[polar] > 0.5) == (tone[polar] == 1)))
    measured["polar_inside_band"] = float(np.mean(inside[polar]))
    measured["neutral_inside_band"] = float(np.mean(inside[~polar]))
    assert measured["polar_accuracy"] >= posts["polar_accuracy"] - allowance, (measured, posts)
    # one post more or less inside the band is 0.9 (polar) or 2.2 (neutral) points
    assert measured["polar_inside_band"] <= posts["polar_inside_band"] + max(allowance, 0.01), (
        measured,
        posts,
    )
    assert measured["neutral_inside_band"] >= posts["neutral_inside_band"] - max(allowance, 0.023), (
        measured,
        posts,
    )

    valid = {
        "sentiment_valid": [e.text for e in datasets.load_sentiment().examples if e.split == "valid"],
        "intent_valid": [e.text for e in datasets.load_intents(names) if e.split == "valid"],
        "posts_valid": [e.text for e in datasets.load_posts() if e.split == "valid"],
    }
    for name, texts in valid.items():
        _, _, served = _served(url, texts)
        cosine = float(np.mean(np.sum(served * _pretrained(texts), axis=1)))
        assert cosine >= cosines[name] - 0.01, (name, cosine, "card", cosines[name])
        measured.setdefault("embedding_cosine", cosine)
        measured["embedding_cosine"] = min(measured["embedding_cosine"], cosine)

    if training == "full":
        for key, figure in README_FULL.items():
            slack = max(allowance, 0.01) if key == "embedding_cosine" else allowance
            if key == "polar_inside_band":
                assert measured[key] <= figure + slack, (
                    f"{key}: served {measured[key]:.4f}, the README says {figure}"
                )
            else:
                assert measured[key] >= figure - slack, (
                    f"{key}: served {measured[key]:.4f}, the README says {figure}"
                )
