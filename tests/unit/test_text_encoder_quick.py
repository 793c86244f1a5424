"""The quick text encoder: frozen MiniLM + logistic-regression heads.

The export test fits the quick heads on a handful of sentences, exports the checkpoint as the
build does, and checks the ONNX outputs against an independent computation: MiniLM through
transformers with mean pooling in numpy, and the logistic regressions fitted again on those
embeddings. Which version `make demo` serves: test_demo_models.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import triton_models
from tests.unit.test_text_encoder_train import _examples
from triton_models import text_encoder_quick as tq
from triton_models import text_encoder_train as tt

TEXTS = ["where is my parcel, it is a week late", "A warm, funny film.", "hi"]


def test_affine_reads_the_classifier_exactly() -> None:
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=5), rng.uniform(0.5, 2.0, size=5)
    w, b = rng.normal(size=(5, 3)), rng.normal(size=3)

    def classify(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((x - mean) / std) @ w + b
        return out

    weight, bias = tq.affine(classify, 5)
    # the standardisation folded by hand: W' = W / std, b' = b - (mean / std) W
    np.testing.assert_allclose(weight, (w / std[:, None]).T, atol=1e-12)
    np.testing.assert_allclose(bias, b - (mean / std) @ w, atol=1e-12)
    x = rng.normal(size=(4, 5))
    np.testing.assert_allclose(x @ weight.T + bias, classify(x), atol=1e-12)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _pretrained_embeddings(texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2's sentence embedding, computed apart from TextEncoder: transformers, then
    mean pooling over real tokens and L2 normalisation in numpy."""
    import torch
    from transformers import AutoModel

    from triton_models.text_encoder_export import tokenize

    ids, mask = tokenize(texts)
    encoder = AutoModel.from_pretrained(str(triton_models.minilm_path()), local_files_only=True).eval()
    with torch.no_grad():
        hidden = encoder(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    h, m = hidden.last_hidden_state.numpy(), mask[..., None].astype(np.float32)
    pooled = (h * m).sum(axis=1) / m.sum(axis=1)
    out: np.ndarray = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    return out


def test_the_quick_model_exports_the_frozen_embedding_and_its_heads(tmp_path: Path) -> None:
    import onnxruntime as ort

    from triton_models import text_encoder_export as te
    from triton_models.build import _check_against_config

    sentiment, intents = _examples()
    config = tt.TrainConfig(steps=0, eval_batch=8)
    metrics = tq.fit(config, sentiment, intents, tmp_path / "text_encoder.pt")
    assert metrics["mode"] == "quick"
    low, high = metrics["sentiment"]["calibration"]["neutral_band"]
    assert 0.0 < low <= 0.5 <= high < 1.0
    assert len(metrics["intent"]["per_class_f1"]) == 13

    model = te.load_text_encoder(tmp_path / "text_encoder.pt")
    dest = tmp_path / "model.onnx"
    te.export(model, dest)
    _check_against_config(triton_models.TEXT_ENCODER, dest)
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    ids, mask = te.tokenize(TEXTS)
    got_sentiment, got_intent, got_embedding = session.run(
        ["sentiment_probs", "intent_probs", "embedding"], {"input_ids": ids, "attention_mask": mask}
    )

    # the served embedding is the pretrained sentence embedding
    np.testing.assert_allclose(got_embedding, _pretrained_embeddings(TEXTS), atol=1e-5)
    # the heads are the logistic regressions on the frozen training embeddings (sentiment with
    # the valid-fitted temperature), fitted again here on independently computed embeddings
    names = triton_models.load_labels()["intents"]

    def split(examples: list, name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = [e for e in examples if e.split == name]
        return _pretrained_embeddings([e.text for e in rows]), np.array([e.label for e in rows])

    s_train, s_valid = split(sentiment, "train"), split(sentiment, "valid")
    classify, _ = tt.logistic_regression(*s_train, *s_valid, 2)
    temperature = metrics["sentiment"]["calibration"]["temperature"]
    emb = _pretrained_embeddings(TEXTS)
    np.testing.assert_allclose(got_sentiment, _softmax(classify(emb) / temperature), atol=2e-3)
    i_train, i_valid = split(intents, "train"), split(intents, "valid")
    iclassify, _ = tt.logistic_regression(*i_train, *i_valid, len(names))
    np.testing.assert_allclose(got_intent, _softmax(iclassify(emb)), atol=2e-3)


def test_the_quick_key_is_its_own_and_follows_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    key = tq.quick_key()
    assert key.startswith("quick-") and key != tt.training_key(tt.TrainConfig())
    real = tt._sha256_file
    monkeypatch.setattr(
        tt, "_sha256_file", lambda p: "edited" if p.name == "text_encoder_quick.py" else real(p)
    )
    assert tq.quick_key() != key  # an edit of the quick code alone is a new cache entry


def test_a_quick_version_without_an_int8_file_is_served_fp32(tmp_path: Path) -> None:
    import hashlib

    from triton_models import quantize

    measured, quick = tmp_path / "1", tmp_path / "2"
    for folder, body in ((measured, b"full"), (quick, b"quick")):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(body)
    (measured / quantize.INT8_FILENAME).write_bytes(b"int8 of full")
    digest = {
        "fp32": hashlib.sha256(b"full").hexdigest(),
        "int8": hashlib.sha256(b"int8 of full").hexdigest(),
    }
    record = tmp_path / "int8.json"
    record.write_text(json.dumps({"verdict": {"serve_int8": True}, "sha256": digest}))
    assert quantize.served_filename(measured, record) == quantize.INT8_FILENAME
    assert quantize.served_filename(quick, record) == "model.onnx"
