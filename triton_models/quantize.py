"""INT8 text encoder for the CPU profile: `python -m triton_models.quantize [--rounds 3]`.

Dynamic quantisation (onnxruntime `quantize_dynamic`: int8 weights, activations quantised per
batch at run time) of the served fp32 ONNX file, written beside it as `model.int8.onnx`.

One run measures fp32 and every candidate setting (weight type QInt8 / QUInt8, per-channel or
per-tensor) on the SAME inputs:

- the setting is chosen on selection sets only (Rotten Tomatoes valid, intent valid, and the
  valid slice of the in-domain posts, `datasets.post_split`): the fastest
  candidate (by its smaller speed-up over the workloads) whose accuracy is within the bound of
  fp32 on all three, else the one with the smallest worst loss; test splits never choose;
- accuracy on every test set the model card reports (Rotten Tomatoes test, intent test) and the
  in-domain customer posts (`data/sentiment_test.jsonl`, with the neutral band of labels.json);
- throughput (texts/s) on the worker's batches: texts in arrival order, 32 a batch, each padded
  to its longest text rounded up to 16 tokens (streams.text.TextTokenizer, the worker's own
  tokenizer), with onnxruntime threads as the generated CPU profile sets them; fp32 and int8
  alternate round by round so that load on the shared cores hits both alike. Two workloads:
  short chat texts and longer social posts; the speed-up that counts is the smaller of the two.

The figures go to `bench/results/int8-<UTC>.json` (machine noted) and to
`build/metrics/text_encoder_int8.json`, which the model card renders and `served_filename`
reads: the CPU profile serves INT8 only when that record describes the current fp32 and int8
files byte for byte AND both targets (speed-up and accuracy bound) were met.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from triton_models import PACKAGE_DIR, REPO_ROOT, TEXT_ENCODER, load_labels, onnx_path

log = logging.getLogger("triton_models.quantize")

INT8_FILENAME = "model.int8.onnx"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
METRICS_FILE = REPO_ROOT / "build" / "metrics" / "text_encoder_int8.json"
CPU_CONFIG = REPO_ROOT / "build" / "triton-cpu" / TEXT_ENCODER / "config.pbtxt"
IN_DOMAIN_TEST = PACKAGE_DIR / "data" / "sentiment_test.jsonl"
IN_DOMAIN_LABELS = ("negative", "positive", "neutral")

MIN_SPEEDUP = 1.8  # issue 11: int8 texts/s >= 1.8 x fp32 on the worker's batches
MAX_ACCURACY_LOSS = 0.01  # issue 11: <= 1 point on every test set
WORKER_BATCH = 32  # the chat agent's take() size (bench/run.py BATCH)
SOCIAL_TEXTS = 320  # longer texts: 10 worker batches
# (weight type name, per_channel): the settings compared; the names are QuantType members.
CANDIDATES: tuple[tuple[str, bool], ...] = (
    ("QInt8", False),
    ("QInt8", True),
    ("QUInt8", False),
    ("QUInt8", True),
)


class QuantizeError(RuntimeError):
    """The fp32 model is missing or a quantised file could not be written."""


def int8_path(fp32: Path) -> Path:
    return fp32.with_name(INT8_FILENAME)


def quantize_file(src: Path, dest: Path, weight_type: str = "QInt8", per_channel: bool = False) -> Path:
    """Write the dynamically quantised copy of `src` to `dest` (atomically)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not src.is_file():
        raise QuantizeError(f"{src} not found; run `python -m triton_models.build` first")
    tmp = dest.with_name(dest.name + ".tmp")
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType[weight_type], per_channel=per_channel)
    os.replace(tmp, dest)
    return dest


def cpu_profile_threads(config: Path = CPU_CONFIG) -> int:
    """intra_op_num_threads of the generated CPU config (1, the build's default, if none)."""
    try:
        from triton_models.configs import PARAM_THREADS, load_config

        return int(load_config(config).parameters[PARAM_THREADS].string_value or 1)
    except (FileNotFoundError, ValueError):
        return 1


def session(path: Path, threads: int) -> Any:
    """An onnxruntime session set up as cpu/python_onnx_model.py sets it up."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Batch:
    input_ids: np.ndarray
    attention_mask: np.ndarray


def worker_batches(texts: Sequence[str], size: int = WORKER_BATCH) -> list[Batch]:
    """`texts` in order, `size` a batch, tokenised and padded by the worker's own tokenizer."""
    from streams.text import TextTokenizer
    from triton_models.text_encoder_export import tokenizer_file

    tok = TextTokenizer(tokenizer_file(), int(load_labels()["tokenizer"]["max_length"]))
    out = []
    for i in range(0, len(texts), size):
        enc = tok.encode(texts[i : i + size])
        out.append(Batch(enc.input_ids, enc.attention_mask))
    return out


def load_in_domain(path: Path = IN_DOMAIN_TEST) -> list[tuple[str, str]]:
    """(text, sentiment) rows of the hand-written customer posts (see data/SENTIMENT.md)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)
        if row["sentiment"] not in IN_DOMAIN_LABELS:
            raise ValueError(f"{path}:{number}: unknown sentiment {row['sentiment']!r}")
        rows.append((str(row["text"]), str(row["sentiment"])))
    return rows


@dataclass(frozen=True)
class EvalSets:
    """Texts and labels of every set measured; `workloads` are what throughput is timed on."""

    rt_valid: tuple[list[str], np.ndarray]
    rt_test: tuple[list[str], np.ndarray]
    intent_valid: tuple[list[str], np.ndarray]
    intent_test: tuple[list[str], np.ndarray]
    in_domain: tuple[list[str], list[str]]
    in_domain_select: tuple[list[str], list[str]]

    def workloads(self) -> dict[str, tuple[str, list[str]]]:
        """{name: (description, texts)}: short customer texts as the chat agent sees them, and
        longer social posts as the demo's held-out feed sends them (producers.corpus.held_out:
        a review snippet with a brand mention)."""
        return {
            "chat": (
                "in-domain test posts + intent test messages, in file order",
                [*self.in_domain[0], *self.intent_test[0]],
            ),
            "social": (
                f"the first {SOCIAL_TEXTS} Rotten Tomatoes test snippets + ' @freshcart'",
                [f"{t} @freshcart" for t in self.rt_test[0][:SOCIAL_TEXTS]],
            ),
        }


def load_eval_sets() -> EvalSets:
    from triton_models import datasets

    rt = datasets.load_sentiment()
    intents = datasets.load_intents(load_labels()["intents"])

    def pick(examples: Sequence[datasets.Example], split: str) -> tuple[list[str], np.ndarray]:
        rows = [e for e in examples if e.split == split]
        return [e.text for e in rows], np.array([e.label for e in rows], dtype=np.int64)

    posts = load_in_domain()
    # the fine-tune trains on the rest of sentiment_train.jsonl; its valid slice selects
    select = [(e.text, e.group) for e in datasets.load_posts() if e.split == "valid"]
    return EvalSets(
        rt_valid=pick(rt.examples, "valid"),
        rt_test=pick(rt.examples, "test"),
        intent_valid=pick(intents, "valid"),
        intent_test=pick(intents, "test"),
        in_domain=([t for t, _ in posts], [s for _, s in posts]),
        in_domain_select=([t for t, _ in select], [s for _, s in select]),
    )


# --------------------------------------------------------------------------------------- scoring


def predict(sess: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(sentiment_probs, intent_probs) of `texts`, run in the worker's batches."""
    sentiment, intent = [], []
    for b in worker_batches(texts):
        s, i = sess.run(
            ["sentiment_probs", "intent_probs"],
            {"input_ids": b.input_ids, "attention_mask": b.attention_mask},
        )
        sentiment.append(s)
        intent.append(i)
    return np.concatenate(sentiment), np.concatenate(intent)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def in_domain_metrics(
    p_positive: np.ndarray, labels: Sequence[str], band: tuple[float, float]
) -> dict[str, Any]:
    """Polar accuracy (argmax), share of polar posts inside the band, share of neutral inside it.

    `flipped` counts polar posts read OUTSIDE the band with the wrong sign: the worst error,
    a confident positive for a complaint (or the reverse).
    """
    lo, hi = band
    p = np.asarray(p_positive, dtype=np.float64)
    y = np.asarray(labels)
    inside = (p >= lo) & (p <= hi)
    polar = y != "neutral"
    positive = y == "positive"
    predicted_positive = p > 0.5
    polar_n = int(polar.sum())
    neutral_n = int((~polar).sum())
    wrong_outside = polar & ~inside & (predicted_positive != positive)
    return {
        "band": [lo, hi],
        "polar": polar_n,
        "neutral": neutral_n,
        "polar_accuracy": float(np.mean(predicted_positive[polar] == positive[polar])) if polar_n else None,
        "polar_inside_band": float(np.mean(inside[polar])) if polar_n else None,
        "neutral_inside_band": float(np.mean(inside[~polar])) if neutral_n else None,
        "polar_flipped": int(wrong_outside.sum()),
    }


def score(sess: Any, sets: EvalSets, band: tuple[float, float], valid_only: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rt_s, _ = predict(sess, sets.rt_valid[0])
    _, it_p = predict(sess, sets.intent_valid[0])
    out["rt_valid_accuracy"] = accuracy(rt_s, sets.rt_valid[1])
    out["intent_valid_accuracy"] = accuracy(it_p, sets.intent_valid[1])
    sel_s, _ = predict(sess, sets.in_domain_select[0])
    out["in_domain_valid_accuracy"] = in_domain_metrics(sel_s[:, 1], sets.in_domain_select[1], band)[
        "polar_accuracy"
    ]
    if valid_only:
        return out
    rt_s, _ = predict(sess, sets.rt_test[0])
    _, it_p = predict(sess, sets.intent_test[0])
    dom_s, _ = predict(sess, sets.in_domain[0])
    out["rt_test_accuracy"] = accuracy(rt_s, sets.rt_test[1])
    out["intent_test_accuracy"] = accuracy(it_p, sets.intent_test[1])
    out["in_domain"] = in_domain_metrics(dom_s[:, 1], sets.in_domain[1], band)
    return out


def throughput(sessions: dict[str, Any], batches: list[Batch], rounds: int) -> dict[str, dict[str, float]]:
    """texts/s of each session over the same batches; the order of sessions alternates per round."""
    names = list(sessions)
    for name in names:  # warm-up: one pass each, not timed
        for b in batches[:2]:
            sessions[name].run(None, {"input_ids": b.input_ids, "attention_mask": b.attention_mask})
    elapsed = dict.fromkeys(names, 0.0)
    per_round: dict[str, list[float]] = {n: [] for n in names}
    texts = sum(b.input_ids.shape[0] for b in batches)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            for b in batches:
                sessions[name].run(None, {"input_ids": b.input_ids, "attention_mask": b.attention_mask})
            took = time.perf_counter() - start
            elapsed[name] += took
            per_round[name].append(texts / took)
    return {
        n: {
            "texts_per_s": texts * rounds / elapsed[n],
            "round_min": min(per_round[n]),
            "round_max": max(per_round[n]),
        }
        for n in names
    }


# -------------------------------------------------------------------------------------- decision


def losses(fp32: dict[str, Any], int8: dict[str, Any], keys: Sequence[str]) -> dict[str, float]:
    """fp32 minus int8 accuracy per set (positive = int8 is worse)."""
    return {k: float(fp32[k]) - float(int8[k]) for k in keys}


def choose(
    valid: dict[str, dict[str, Any]], speed: dict[str, float], bound: float = MAX_ACCURACY_LOSS
) -> str:
    """The candidate to ship, from valid accuracy (key "fp32" is the reference) and texts/s:
    the fastest within `bound` on every valid set, else the smallest worst loss."""
    keys = [k for k in valid["fp32"] if k.endswith("_valid_accuracy")]
    worst = {n: max(losses(valid["fp32"], v, keys).values()) for n, v in valid.items() if n != "fp32"}
    within = [n for n, w in worst.items() if w <= bound + 1e-12]
    if within:
        return max(within, key=lambda n: speed[n])
    return min(worst, key=lambda n: worst[n])


def verdict(fp32: dict[str, Any], int8: dict[str, Any], speedup: float) -> dict[str, Any]:
    test_keys = {
        "rt_test_accuracy": fp32["rt_test_accuracy"],
        "intent_test_accuracy": fp32["intent_test_accuracy"],
    }
    loss = losses(fp32, int8, list(test_keys))
    loss["in_domain_polar_accuracy"] = float(fp32["in_domain"]["polar_accuracy"]) - float(
        int8["in_domain"]["polar_accuracy"]
    )
    accuracy_met = all(v <= MAX_ACCURACY_LOSS + 1e-12 for v in loss.values())
    speed_met = speedup >= MIN_SPEEDUP
    return {
        "accuracy_loss": loss,
        "accuracy_met": accuracy_met,
        "speedup": speedup,
        "speedup_met": speed_met,
        "serve_int8": accuracy_met and speed_met,
    }


DEFAULT_SETTING = ("QInt8", True)  # what the last full measurement chose (see the model card)


def chosen_setting(metrics: Path = METRICS_FILE) -> tuple[str, bool]:
    """(weight type, per_channel) the last measurement chose, for the build to quantise a new
    version alike; DEFAULT_SETTING when nothing was measured. A new file still needs its own
    measurement before it is served (served_filename compares hashes)."""
    try:
        chosen = str(json.loads(metrics.read_text())["chosen"])
    except (FileNotFoundError, ValueError, KeyError):
        return DEFAULT_SETTING
    for weight_type, per_channel in CANDIDATES:
        if chosen == candidate_name(weight_type, per_channel):
            return weight_type, per_channel
    return DEFAULT_SETTING


def candidate_name(weight_type: str, per_channel: bool) -> str:
    return f"{weight_type}{'-per-channel' if per_channel else ''}"


def served_filename(version_dir: Path, metrics: Path = METRICS_FILE) -> str:
    """The file the CPU profile serves from `version_dir`: the INT8 one only when the last
    measurement describes exactly these fp32 and int8 files and met both targets."""
    from triton_models.build import file_sha256

    int8 = version_dir / INT8_FILENAME
    fp32 = version_dir / "model.onnx"
    try:
        record = json.loads(metrics.read_text())
    except (FileNotFoundError, ValueError):
        return fp32.name
    if not (int8.is_file() and fp32.is_file() and record.get("verdict", {}).get("serve_int8")):
        return fp32.name
    if record.get("sha256", {}) != {"fp32": file_sha256(fp32), "int8": file_sha256(int8)}:
        return fp32.name
    return int8.name


# ------------------------------------------------------------------------------------------- run


def run(rounds: int, workdir: Path) -> dict[str, Any]:
    from triton_models.build import file_sha256, installed_training
    from triton_models.model_card import machine

    fp32_file = onnx_path(TEXT_ENCODER)
    if not fp32_file.is_file():
        raise QuantizeError(f"{fp32_file} not found; run `python -m triton_models.build` first")
    threads = cpu_profile_threads()
    labels = load_labels()
    band = (float(labels["neutral_band"][0]), float(labels["neutral_band"][1]))
    sets = load_eval_sets()
    workloads = {name: (what, worker_batches(texts)) for name, (what, texts) in sets.workloads().items()}
    workdir.mkdir(parents=True, exist_ok=True)

    files = {"fp32": fp32_file}
    for weight_type, per_channel in CANDIDATES:
        name = candidate_name(weight_type, per_channel)
        start = time.monotonic()
        files[name] = quantize_file(fp32_file, workdir / f"{name}.onnx", weight_type, per_channel)
        log.info("quantised %s in %.1fs", name, time.monotonic() - start)
    sessions = {n: session(p, threads) for n, p in files.items()}
    speed: dict[str, dict[str, dict[str, float]]] = {}
    for name, (_, batches) in workloads.items():
        log.info(
            "throughput on %s: %d worker batches, %d round(s), %d thread(s)",
            name,
            len(batches),
            rounds,
            threads,
        )
        speed[name] = throughput(sessions, batches, rounds)
        log.info("texts/s: %s", {n: round(v["texts_per_s"], 1) for n, v in speed[name].items()})
    # A candidate's speed-up is its smallest over the workloads; choose() ranks by it.
    speedups = {n: min(w[n]["texts_per_s"] / w["fp32"]["texts_per_s"] for w in speed.values()) for n in files}
    valid = {n: score(s, sets, band, valid_only=True) for n, s in sessions.items()}
    chosen = choose(valid, speedups)
    log.info("chosen on valid: %s", chosen)
    fp32_scores = score(sessions["fp32"], sets, band)
    int8_scores = score(sessions[chosen], sets, band)
    dest = int8_path(fp32_file)
    os.replace(files[chosen], dest)
    return {
        "command": "python -m triton_models.quantize " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "model": {
            "fp32": str(fp32_file.relative_to(REPO_ROOT)),
            "int8": str(dest.relative_to(REPO_ROOT)),
            "training": installed_training("unknown"),
        },
        "sha256": {"fp32": file_sha256(fp32_file), "int8": file_sha256(dest)},
        "threads": threads,
        "workloads": {name: _describe(what, batches, rounds) for name, (what, batches) in workloads.items()},
        "throughput": speed,
        "speedups": speedups,
        "valid": valid,
        "chosen": chosen,
        "fp32": fp32_scores,
        "int8": int8_scores,
        "verdict": verdict(fp32_scores, int8_scores, speedups[chosen]),
        "targets": {"min_speedup": MIN_SPEEDUP, "max_accuracy_loss": MAX_ACCURACY_LOSS},
    }


def _describe(what: str, batches: list[Batch], rounds: int) -> dict[str, Any]:
    lengths = [int(b.attention_mask.shape[1]) for b in batches]
    return {
        "source": what,
        "texts": sum(int(b.input_ids.shape[0]) for b in batches),
        "batches": len(batches),
        "batch_size": WORKER_BATCH,
        "padded_lengths": {str(n): lengths.count(n) for n in sorted(set(lengths))},
        "rounds": rounds,
    }


def write_results(result: dict[str, Any]) -> list[Path]:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    out = []
    for dest in (RESULTS_DIR / f"int8-{stamp}.json", METRICS_FILE):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, dest)
        out.append(dest)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m triton_models.quantize", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the workload per variant")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "build" / "int8", help="candidate files")
    args = parser.parse_args(argv)
    # The CLI configures the package logger only: onnxruntime's quantiser logs every tensor at
    # INFO on the root logger, which stays at its default (WARNING).
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logging.getLogger("triton_models").addHandler(handler)
    logging.getLogger("triton_models").setLevel(logging.INFO)
    logging.getLogger("triton_models").propagate = False  # onnxruntime adds a root handler
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        result = run(args.rounds, args.workdir)
    except (QuantizeError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 1
    for path in write_results(result):
        log.info("wrote %s", path)
    v = result["verdict"]
    log.info(
        "%s: speed-up %.2fx (target %.1fx), accuracy loss %s: serve INT8 = %s",
        result["chosen"],
        v["speedup"],
        MIN_SPEEDUP,
        {k: round(x * 100, 2) for k, x in v["accuracy_loss"].items()},
        v["serve_int8"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
