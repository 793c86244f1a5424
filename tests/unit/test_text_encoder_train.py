"""The text encoder's fine-tune path, without the full build: data, calibration and a 2-step run.

The 2-step run goes through the real training loop (mixed sentiment + intent batches, AdamW,
temperature folding, band choice) on a handful of sentences, then exports and checks an ONNX
graph in a temporary folder exactly as the build does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import triton_models
from triton_models import datasets
from triton_models import text_encoder_train as tt

SENTIMENT = [
    ("A warm, funny and beautifully acted film.", 1),
    ("The best thing in theatres this year.", 1),
    ("Clever, touching and never dull.", 1),
    ("An utterly charming comedy.", 1),
    ("A tedious, clumsy mess of a movie.", 0),
    ("Two hours I will never get back.", 0),
    ("Flat jokes and a plot that goes nowhere.", 0),
    ("Dull, loud and far too long.", 0),
]
POSTS = [
    ("obsessed with these trainers 😍", "positive"),
    ("parcel lost AGAIN, done with this courier", "negative"),
    ("do you ship to ireland?", "neutral"),
    ("just ordered the blue one, arriving thursday", "neutral"),
]
INTENTS = [
    ("where is my order", "order_status"),
    ("my parcel is three days late", "shipping_delay"),
    ("I want a refund for this jacket", "return_refund"),
    ("please cancel my order", "cancel_order"),
    ("hi there", "greeting"),
    ("let me talk to a person", "human_agent"),
]


def _posts() -> list[datasets.Example]:
    return [
        datasets.Example(text, datasets.POST_LABELS[tone], split, tone)
        for split in datasets.SPLITS
        for text, tone in POSTS
    ]


def _examples() -> tuple[list[datasets.Example], list[datasets.Example]]:
    names = triton_models.load_labels()["intents"]
    sentiment = [
        datasets.Example(text, label, split, f"film{i}")
        for split in datasets.SPLITS
        for i, (text, label) in enumerate(SENTIMENT)
    ]
    intents = [
        datasets.Example(text, names.index(intent), split, intent)
        for split in datasets.SPLITS
        for text, intent in INTENTS
    ]
    return sentiment, intents


def test_two_training_steps_then_export_and_check(tmp_path: Path) -> None:
    from triton_models import text_encoder_export as te
    from triton_models.build import _check_against_config

    config = tt.TrainConfig(
        steps=2,
        sentiment_rows=4,
        post_rows=2,
        intent_rows=2,
        baseline=False,
        eval_batch=8,
        deterministic=False,
    )
    sentiment, intents = _examples()
    checkpoint = tmp_path / "text_encoder.pt"
    metrics = tt.train(config, sentiment, intents, checkpoint, _posts())

    assert [h["step"] for h in metrics["history"]] == [2]
    assert 0.0 <= metrics["sentiment"]["test_accuracy"] <= 1.0
    low, high = metrics["sentiment"]["calibration"]["neutral_band"]
    assert 0.0 < low <= 0.5 <= high < 1.0
    assert metrics["intent"]["confusion"] and len(metrics["intent"]["per_class_f1"]) == 13
    assert set(metrics["embedding"]) == {"sentiment_valid", "intent_valid", "posts_valid"}
    assert metrics["embedding"]["posts_valid"]["mean_cosine_to_pretrained"] > 0.5  # two small steps, anchored
    in_domain = metrics["sentiment"]["in_domain"]["test"]
    assert (in_domain["polar"], in_domain["neutral"]) == (2, 2)
    assert metrics["sentiment"]["calibration"]["rule"] == tt.POST_BAND_RULE
    # every term of the loss ran (the greeting, order-status and complaint rows carry a tone)
    assert set(metrics["final_loss"]) == {"sentiment", "posts", "intent", "chat_sentiment", "anchor"}
    assert sum(v["n"] for v in metrics["chat_sentiment"].values()) == 2 * len(INTENTS)

    model = te.load_text_encoder(checkpoint)
    dest = tmp_path / "model.onnx"
    te.export(model, dest)
    check = te.verify(model, dest)
    assert max(check.max_abs_diff.values()) <= te.ATOL
    _check_against_config(triton_models.TEXT_ENCODER, dest)


def test_labels_carry_a_valid_neutral_band() -> None:
    labels = triton_models.load_labels()
    band = labels["neutral_band"]
    assert isinstance(band, list) and len(band) == 2
    low, high = (float(v) for v in band)
    assert 0.0 < low <= 0.5 <= high < 1.0, band
    assert high - low < 0.9, "a band this wide would call almost everything neutral"
    assert float(labels["sentiment_temperature"]) > 0
    assert "valid" in labels["neutral_band_rule"]


def test_labels_layout_round_trips() -> None:
    text = triton_models.LABELS_FILE.read_text()
    assert tt.dump_labels(json.loads(text)) == text


def test_training_key_ignores_what_training_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = json.loads(triton_models.LABELS_FILE.read_text())
    copy = tmp_path / "labels.json"
    copy.write_text(tt.dump_labels(labels))
    monkeypatch.setattr(tt, "LABELS_FILE", copy)
    key = tt.training_key(tt.TrainConfig())
    tt.update_labels({"neutral_band": [0.1, 0.9], "sentiment_temperature": 3.0}, copy)
    assert tt.training_key(tt.TrainConfig()) == key
    assert tt.training_key(tt.TrainConfig(seed=1)) != key
    monkeypatch.setenv(tt.CACHE_ENV, str(tmp_path / "cache"))
    assert tt.cache_dir(key) == tmp_path / "cache" / f"text_encoder-{key}"


def test_temperature_and_band() -> None:
    rng = np.random.default_rng(0)
    # Over-confident logits: the true log-odds are logit / 3.
    true_log_odds = rng.normal(0, 2, size=4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_log_odds))).astype(np.int64)
    logits = np.stack([np.zeros(4000), 3 * true_log_odds], axis=1)
    temperature = tt.fit_temperature(logits, labels)
    assert 2.5 < temperature < 3.5
    p = 1 / (1 + np.exp(-logits[:, 1] / temperature))
    low, high = tt.choose_band(p, labels)
    assert low == pytest.approx(1 - high)
    outside = (p < low) | (p > high)
    assert ((p[outside] > 0.5) == labels[outside]).mean() >= tt.BAND_TARGET_ACCURACY
    narrower = np.abs(p - 0.5) > (high - 0.5 - tt.BAND_GRID)
    assert ((p[narrower] > 0.5) == labels[narrower]).mean() < tt.BAND_TARGET_ACCURACY


def test_intent_report_macro_f1() -> None:
    names = ["a", "b", "c"]
    logits = np.eye(3)[[0, 0, 1, 2, 2, 2]]
    report = tt.intent_report(logits, np.array([0, 1, 1, 2, 2, 2]), names)
    assert report["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 3]]
    assert report["per_class_f1"] == {"a": 0.6667, "b": 0.6667, "c": 1.0}
    assert report["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, abs=1e-4)


def test_sentiment_split_never_shares_a_film() -> None:
    data = datasets.load_sentiment()
    films: dict[str, set[str]] = {}
    for e in data.examples:
        films.setdefault(e.group, set()).add(e.split)
    assert all(len(splits) == 1 for splits in films.values())
    assert len({e.text for e in data.examples}) == len(data.examples)
    counts = {s: len(data.split(s)) for s in datasets.SPLITS}
    assert counts["train"] > 6 * counts["test"] > 0 and counts["train"] > 6 * counts["valid"] > 0
    assert {e.label for e in data.examples} == {0, 1}


def test_intents_file_matches_the_labels() -> None:
    if not datasets.INTENTS_FILE.is_file():
        pytest.skip("triton_models/data/intents.jsonl not written yet")
    names = triton_models.load_labels()["intents"]
    examples = datasets.load_intents(names)
    assert {e.group for e in examples} == set(names)
    assert {e.split for e in examples} == set(datasets.SPLITS)


def test_embedding_report_sees_a_collapse() -> None:
    rng = np.random.default_rng(0)
    pretrained = rng.normal(size=(40, 16))
    pretrained /= np.linalg.norm(pretrained, axis=1, keepdims=True)
    labels = np.arange(40) % 4
    same = tt.embedding_report(pretrained, pretrained, labels)
    assert same["mean_cosine_to_pretrained"] == pytest.approx(1.0)
    assert same["pairwise_spearman"] == pytest.approx(1.0)
    collapsed = np.eye(16)[labels]  # every text of a label on one vector
    report = tt.embedding_report(pretrained, collapsed, labels)
    assert report["same_label_cosine"] == 1.0 and report["other_label_cosine"] == 0.0
    assert report["pairwise_spearman"] < 0.5


def test_soft_temperature_weighs_each_part_the_same() -> None:
    rng = np.random.default_rng(1)
    # part 1: 2000 polar rows, over-confident by 2x; part 2: 50 neutral rows whose target is [0.5, 0.5]
    log_odds = rng.normal(0, 2, size=2000)
    labels = (rng.random(2000) < 1 / (1 + np.exp(-log_odds))).astype(np.int64)
    polar = np.stack([np.zeros(2000), 2 * log_odds], axis=1)
    neutral = np.stack([np.zeros(50), rng.normal(0, 3, size=50)], axis=1)
    parts = [(polar, np.eye(2)[labels]), (neutral, tt.sentiment_targets(np.full(50, datasets.NEUTRAL)))]

    def objective(t: float) -> float:  # written out by hand: mean over parts of mean soft NLL
        total = 0.0
        for z, target in parts:
            p1 = 1 / (1 + np.exp(-(z[:, 1] - z[:, 0]) / t))
            total += float(np.mean(-(target[:, 1] * np.log(p1) + target[:, 0] * np.log(1 - p1))))
        return total / 2

    grid = np.linspace(0.5, 20, 3901)
    best = grid[int(np.argmin([objective(t) for t in grid]))]
    assert tt.fit_temperature_soft(parts) == pytest.approx(best, abs=0.01)
    # the neutral part pulls T above what the polar rows alone ask for (about 2)
    assert best > tt.fit_temperature(polar, labels) + 0.2


def test_post_band_maximises_neutral_minus_polar_inside() -> None:
    n = datasets.NEUTRAL
    # 20 polar posts: one at 0.47 (inside from d = 0.03), the rest at 0.1 / 0.9 (inside from d = 0.4);
    # 10 neutral posts at 0.50, 0.48, 0.55, 0.60, 0.35, and five at 0.95 (never worth taking in)
    p = np.array([0.47] + [0.1] * 10 + [0.9] * 9 + [0.50, 0.48, 0.55, 0.60, 0.35] + [0.95] * 5)
    labels = np.array([1] + [0] * 10 + [1] * 9 + [n] * 10)
    # by hand: d=0.15 takes all five near neutrals (0.5) and the one polar (0.05): gain 0.45;
    # the polar posts at 0.1/0.9 enter at d=0.4 (then 100% polar inside: over the 10% bound)
    assert tt.choose_post_band(p, labels) == (0.35, 0.65)
    report = tt.post_report(p, labels, (0.35, 0.65))
    assert report["polar_inside_band"] == 0.05 and report["neutral_inside_band"] == 0.5
    assert report["polar_accuracy"] == 0.95 and report["polar_flipped"] == 0
    with pytest.raises(ValueError):
        tt.choose_post_band(p[:20], labels[:20])


def test_posts_valid_slice_is_fixed_by_the_text() -> None:
    posts = datasets.load_posts()
    train_file = [e for e in posts if e.split != "test"]
    assert {e.split for e in train_file} == {"train", "valid"}
    share = sum(e.split == "valid" for e in train_file) / len(train_file)
    assert 0.12 < share < 0.28, share
    assert datasets.post_split("Do you ship to Ireland?") == datasets.post_split(
        "  do you ship   to ireland? "
    )
    valid = [e for e in train_file if e.split == "valid"]
    assert {e.label for e in valid} == {0, 1, datasets.NEUTRAL}
