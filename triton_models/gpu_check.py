"""One-shot GPU check of the served models in fp16: `python -m triton_models.gpu_check prepare|run`.

The production profile serves both models with TensorRT FP16 (config.pbtxt). TensorRT is not
installed on the lent GPU machine and the ONNX files are too large to travel there, so the
check runs the SAME weights in PyTorch on CUDA under fp16 autocast (matrix products in fp16,
layer norms and softmax in fp32, as `trt_layer_norm_fp32_fallback` asks of TensorRT), at the
shapes the GPU configs declare, and compares with the CPU fp32 outputs of the served ONNX files.

- `prepare` (here, on the CPU): writes a bundle (default `build/gpu_check/`, git-ignored, about
  50 MB): the text encoder's weights in fp16 and its BERT config, the recommender's weights,
  the reference inputs (real texts tokenised in the worker's batches, real Instacart
  histories) and what onnxruntime fp32 on the CPU answers for them. The torch weights are
  checked against the served ONNX files before they are written, so the bundle IS the served
  model.
- `run` (there): `python3 -m triton_models.gpu_check run --bundle build/gpu_check --out $OUT`
  writes `gpu_check.json` and `gpu_check.md` under --out: throughput per batch size and
  sequence length (texts/s and ms per batch), the largest difference from the CPU fp32
  outputs, the share of texts whose neutral-band reading (negative / neutral / positive) and
  intent argmax agree, the recommender's top-k agreement, and whether the shapes run are the
  ones the TensorRT profiles in config.pbtxt cover. `--device cpu --quick` is a dry run.

Needs torch, transformers (BertModel), numpy; `prepare` also onnxruntime and the build inputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from triton_models import (
    RECOMMENDER,
    REPO_ROOT,
    TEXT_ENCODER,
    canonical_config_path,
    load_labels,
    load_recommender_spec,
    onnx_path,
)

log = logging.getLogger("triton_models.gpu_check")

BUNDLE = REPO_ROOT / "build" / "gpu_check"
ENCODER_WEIGHTS = "text_encoder_fp16.pt"
ENCODER_CONFIG = "bert_config.json"
RECOMMENDER_WEIGHTS = "recommender.pt"
REFERENCE = "reference.npz"
MANIFEST = "manifest.json"
TEXT_LENGTHS = (16, 32, 64, 128)  # the worker's buckets (multiples of 16) up to labels.json max_length
REFERENCE_TEXTS = 512  # real texts with CPU fp32 outputs (in-domain + intent + Rotten Tomatoes)
REFERENCE_HISTORIES = 256
PREPARE_ATOL = 1e-4  # torch (from the bundle's source weights) vs the served ONNX, fp32 on the CPU
# What the check calls agreement (fp16 against CPU fp32).
MIN_AGREEMENT = 0.99


class GpuCheckError(RuntimeError):
    """The bundle is missing, incomplete, or does not match the served model."""


# ----------------------------------------------------------------------------------- the configs


@dataclass(frozen=True)
class Profile:
    """The shapes one model's GPU config declares: batching and its TensorRT profile."""

    max_batch_size: int
    min_shape: tuple[int, int]
    opt_shape: tuple[int, int]
    max_shape: tuple[int, int]
    precision: str

    def covers(self, batch: int, length: int) -> bool:
        return (
            self.min_shape[0] <= batch <= self.max_shape[0]
            and self.min_shape[1] <= length <= self.max_shape[1]
            and batch <= self.max_batch_size
        )


def _shape(value: str) -> tuple[int, int]:
    """`input_ids:32x64,attention_mask:32x64` -> (32, 64); every input must agree."""
    shapes = {tuple(int(n) for n in part.split(":")[1].split("x")) for part in value.split(",")}
    if len(shapes) != 1:
        raise GpuCheckError(f"TensorRT profile inputs disagree: {value!r}")
    batch, length = next(iter(shapes))
    return batch, length


def gpu_profile(model: str, config: Path | None = None) -> Profile:
    """Read max_batch_size and the TensorRT accelerator parameters from the canonical config."""
    from triton_models.configs import load_config

    cfg = load_config(config or canonical_config_path(model))
    accelerators = [
        a for a in cfg.optimization.execution_accelerators.gpu_execution_accelerator if a.name == "tensorrt"
    ]
    if not accelerators:
        raise GpuCheckError(f"{model}: no tensorrt accelerator in its config")
    params = dict(accelerators[0].parameters)
    return Profile(
        max_batch_size=int(cfg.max_batch_size),
        min_shape=_shape(params["trt_profile_min_shapes"]),
        opt_shape=_shape(params["trt_profile_opt_shapes"]),
        max_shape=_shape(params["trt_profile_max_shapes"]),
        precision=params.get("precision_mode", "FP32"),
    )


def _profile(data: dict[str, Any]) -> Profile:
    """A Profile from its manifest form (JSON turned the shape tuples into lists)."""
    return Profile(
        max_batch_size=int(data["max_batch_size"]),
        min_shape=(int(data["min_shape"][0]), int(data["min_shape"][1])),
        opt_shape=(int(data["opt_shape"][0]), int(data["opt_shape"][1])),
        max_shape=(int(data["max_shape"][0]), int(data["max_shape"][1])),
        precision=str(data["precision"]),
    )


def batch_sizes(profile: Profile) -> list[int]:
    """1, 8, then powers of two up to max_batch_size, plus the profile's opt batch."""
    sizes = {1, 8, profile.opt_shape[0], profile.max_batch_size}
    n = 16
    while n < profile.max_batch_size:
        sizes.add(n)
        n *= 2
    return sorted(s for s in sizes if s <= profile.max_batch_size)


# ------------------------------------------------------------------------------------- readings


def band_reading(p_positive: np.ndarray, band: Sequence[float]) -> np.ndarray:
    """-1 negative, 0 neutral (inside the band, edges included), +1 positive."""
    p = np.asarray(p_positive)
    return np.where(p < band[0], -1, np.where(p > band[1], 1, 0))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def topk_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of row i's items in `a` also in row i of `b` (order ignored)."""
    return float(
        np.mean([len(set(x.tolist()) & set(y.tolist())) / len(x) for x, y in zip(a, b, strict=True)])
    )


# -------------------------------------------------------------------------------------- prepare


def _reference_texts(count: int) -> list[str]:
    from triton_models import datasets
    from triton_models.quantize import load_in_domain

    texts = [t for t, _ in load_in_domain()]
    texts += [e.text for e in datasets.load_intents(load_labels()["intents"]) if e.split == "test"]
    texts += [e.text for e in datasets.load_sentiment().examples if e.split == "test"]
    return texts[:count]


def prepare(
    bundle: Path = BUNDLE, texts: int = REFERENCE_TEXTS, histories: int = REFERENCE_HISTORIES
) -> Path:
    """Write the bundle `run` needs; fail if the torch weights are not the served ONNX model."""
    import torch

    from triton_models import recommender_fit as rf
    from triton_models import recommender_model as rm
    from triton_models import text_encoder_export as te
    from triton_models.build import file_sha256, recommender_inputs
    from triton_models.quantize import session, worker_batches

    bundle.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}

    # Text encoder: real texts in the worker's batches, CPU fp32 outputs of the served ONNX.
    model = te.load_text_encoder()
    sess = session(onnx_path(TEXT_ENCODER), threads=2)
    batches = worker_batches(_reference_texts(texts))
    worst = 0.0
    for i, b in enumerate(batches):
        feeds = {"input_ids": b.input_ids, "attention_mask": b.attention_mask}
        got = sess.run(["sentiment_probs", "intent_probs", "embedding"], feeds)
        with torch.no_grad():
            want = model(torch.from_numpy(b.input_ids), torch.from_numpy(b.attention_mask))
        worst = max(worst, *(float(np.max(np.abs(g - w.numpy()))) for g, w in zip(got, want, strict=True)))
        arrays[f"text_{i}_input_ids"] = b.input_ids
        arrays[f"text_{i}_attention_mask"] = b.attention_mask
        for name, value in zip(("sentiment_probs", "intent_probs", "embedding"), got, strict=True):
            arrays[f"text_{i}_{name}"] = value
    if worst > PREPARE_ATOL:
        raise GpuCheckError(
            f"text encoder weights differ from the served ONNX by {worst:.2g} > {PREPARE_ATOL}"
        )
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(state, bundle / ENCODER_WEIGHTS)
    encoder_config: Any = model.encoder.config  # a transformers BertConfig
    (bundle / ENCODER_CONFIG).write_text(json.dumps(encoder_config.to_dict(), indent=2) + "\n")

    # Recommender: real histories (the test users' windows), CPU fp32 outputs of the served ONNX.
    spec = load_recommender_spec()
    split = rf.make_split(rf.load_interactions(), int(spec["max_history"]))
    entry = rm.cache_root() / f"recommender-{recommender_inputs(training_only=True)[:20]}"
    rec, report = rm.load(split, int(spec["top_k"]), entry)
    windows = split.test.inputs[:histories]
    rsess = session(onnx_path(RECOMMENDER), threads=2)
    items, scores = rsess.run(["top_items", "top_scores"], {"item_ids": windows})
    with torch.no_grad():
        t_items, t_scores = rec(torch.from_numpy(windows))
    rec_diff = float(np.max(np.abs(t_scores.numpy() - scores)))
    if rec_diff > PREPARE_ATOL or not np.array_equal(t_items.numpy(), items):
        raise GpuCheckError(f"recommender weights differ from the served ONNX (score diff {rec_diff:.2g})")
    torch.save(rec.state_dict(), bundle / RECOMMENDER_WEIGHTS)
    arrays["rec_item_ids"], arrays["rec_top_items"], arrays["rec_top_scores"] = windows, items, scores
    np.savez_compressed(bundle / REFERENCE, **arrays)

    manifest = {
        "text_batches": len(batches),
        "texts": sum(b.input_ids.shape[0] for b in batches),
        "histories": len(windows),
        "labels": load_labels(),
        "recommender": {"spec": spec, "hyper": report.hyper, "catalogue": len(split.catalogue)},
        "onnx_sha256": {m: file_sha256(onnx_path(m)) for m in (TEXT_ENCODER, RECOMMENDER)},
        "torch_vs_onnx_max_abs_diff": {"text_encoder": worst, "recommender_scores": rec_diff},
        "profiles": {m: gpu_profile(m).__dict__ for m in (TEXT_ENCODER, RECOMMENDER)},
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("bundle written to %s (%.1f MB)", bundle, sum(p.stat().st_size for p in bundle.iterdir()) / 1e6)
    return bundle


# ------------------------------------------------------------------------------------------ run


def _load_models(bundle: Path, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import BertConfig, BertModel

    from triton_models import recommender_model as rm
    from triton_models.text_encoder_export import TextEncoder

    manifest = json.loads((bundle / MANIFEST).read_text())
    labels = manifest["labels"]
    config = BertConfig.from_dict(json.loads((bundle / ENCODER_CONFIG).read_text()))
    config._attn_implementation = "sdpa"  # the fused attention a GPU engine would use
    state = torch.load(bundle / ENCODER_WEIGHTS, map_location="cpu", weights_only=True)
    pooler = any(k.startswith("encoder.pooler.") for k in state)
    encoder = BertModel(config, add_pooling_layer=pooler)
    text = TextEncoder(encoder, int(config.hidden_size), len(labels["sentiment"]), len(labels["intents"]))
    text.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})

    rstate = torch.load(bundle / RECOMMENDER_WEIGHTS, map_location="cpu", weights_only=True)
    rinfo = manifest["recommender"]
    catalogue = rstate["index_to_id"].numpy()
    rec = rm.SequenceRecommender(
        catalogue,
        np.zeros(len(catalogue), dtype=np.float64),  # the bias is a trained parameter: loaded below
        int(rinfo["spec"]["max_history"]),
        int(rinfo["spec"]["top_k"]),
        rm.Hyper(**rinfo["hyper"]),
    )
    rec.load_state_dict(rstate)
    return text.eval().to(device), rec.eval().to(device)


def _autocast(device: str, precision: str) -> Any:
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def _timed(fn: Any, device: str, warmup: int, iters: int) -> float:
    """Median milliseconds of fn() over `iters` runs, after `warmup` untimed ones."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def run(bundle: Path, out: Path, device: str, precision: str, quick: bool) -> dict[str, Any]:
    import torch

    if not (bundle / MANIFEST).is_file():
        raise GpuCheckError(f"no bundle at {bundle}: run `python -m triton_models.gpu_check prepare` first")
    if device == "cuda" and not torch.cuda.is_available():
        raise GpuCheckError("CUDA is not available; use --device cpu for a dry run")
    manifest = json.loads((bundle / MANIFEST).read_text())
    band = manifest["labels"]["neutral_band"]
    ref = np.load(bundle / REFERENCE)
    text, rec = _load_models(bundle, device)
    profiles = {m: _profile(p) for m, p in manifest["profiles"].items()}
    result: dict[str, Any] = {"device": _device_info(device), "precision": precision, "quick": quick}

    # Agreement with the CPU fp32 outputs on the reference texts (the worker's batches).
    names = ("sentiment_probs", "intent_probs", "embedding")
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    want: dict[str, list[np.ndarray]] = {n: [] for n in names}
    n_batches = min(manifest["text_batches"], 2) if quick else manifest["text_batches"]
    with torch.no_grad(), _autocast(device, precision):
        for i in range(n_batches):
            ids = torch.from_numpy(ref[f"text_{i}_input_ids"]).to(device)
            mask = torch.from_numpy(ref[f"text_{i}_attention_mask"]).to(device)
            for name, value in zip(names, text(ids, mask), strict=True):
                got[name].append(value.float().cpu().numpy())
                want[name].append(ref[f"text_{i}_{name}"])
    g = {n: np.concatenate(v) for n, v in got.items()}
    w = {n: np.concatenate(v) for n, v in want.items()}
    band_g, band_w = (
        band_reading(g["sentiment_probs"][:, 1], band),
        band_reading(w["sentiment_probs"][:, 1], band),
    )
    result["text_encoder_agreement"] = {
        "texts": int(g["embedding"].shape[0]),
        "max_abs_diff": {n: float(np.max(np.abs(g[n] - w[n]))) for n in names},
        "embedding_min_cosine": float(
            np.min(np.sum(g["embedding"] * w["embedding"], axis=1) / np.linalg.norm(g["embedding"], axis=1))
        ),
        "neutral_band": band,
        "band_reading_agreement": agreement(band_g, band_w),
        "band_disagreements": [
            {
                "cpu_p_positive": float(w["sentiment_probs"][j, 1]),
                "gpu_p_positive": float(g["sentiment_probs"][j, 1]),
            }
            for j in np.flatnonzero(band_g != band_w)
        ],
        "intent_argmax_agreement": agreement(g["intent_probs"].argmax(1), w["intent_probs"].argmax(1)),
    }

    windows = torch.from_numpy(ref["rec_item_ids"][: 16 if quick else None]).to(device)
    with torch.no_grad(), _autocast(device, precision):
        r_items, r_scores = rec(windows)
    r_items, r_scores = r_items.cpu().numpy(), r_scores.float().cpu().numpy()
    ref_items = ref["rec_top_items"][: len(r_items)]
    result["recommender_agreement"] = {
        "histories": len(r_items),
        "max_abs_score_diff": float(np.max(np.abs(r_scores - ref["rec_top_scores"][: len(r_items)]))),
        "top1_agreement": agreement(r_items[:, 0], ref_items[:, 0]),
        "topk_overlap": topk_overlap(r_items, ref_items),
    }

    # Throughput at the shapes the configs declare.
    warmup, iters = (1, 2) if quick else (5, 30)
    tp = profiles[TEXT_ENCODER]
    sizes = [1, 8] if quick else batch_sizes(tp)
    lengths = [16, 32] if quick else [n for n in TEXT_LENGTHS if n <= tp.max_shape[1]]
    rng = np.random.default_rng(0)
    rows = []
    for batch in sizes:
        for length in lengths:
            tokens = rng.integers(1000, 30000, size=(batch, length), dtype=np.int64)
            tokens[:, 0], tokens[:, -1] = 101, 102  # [CLS] ... [SEP]: every position a real token
            t_ids = torch.from_numpy(tokens).to(device)
            t_mask = torch.ones_like(t_ids)

            def step(t_ids: Any = t_ids, t_mask: Any = t_mask) -> None:
                with torch.no_grad(), _autocast(device, precision):
                    text(t_ids, t_mask)

            ms = _timed(step, device, warmup, iters)
            rows.append(
                {
                    "batch": batch,
                    "length": length,
                    "ms": ms,
                    "texts_per_s": batch * 1000 / ms,
                    "in_trt_profile": tp.covers(batch, length),
                }
            )
    result["text_encoder_throughput"] = rows

    rp = profiles[RECOMMENDER]
    history = int(manifest["recommender"]["spec"]["max_history"])
    pool = ref["rec_item_ids"]
    rrows = []
    for batch in [1, 8] if quick else batch_sizes(rp):
        item_ids = torch.from_numpy(np.resize(pool, (batch, history))).to(device)

        def rstep(item_ids: Any = item_ids) -> None:
            with torch.no_grad(), _autocast(device, precision):
                rec(item_ids)

        ms = _timed(rstep, device, warmup, iters)
        rrows.append(
            {
                "batch": batch,
                "length": history,
                "ms": ms,
                "requests_per_s": batch * 1000 / ms,
                "in_trt_profile": rp.covers(batch, history),
            }
        )
    result["recommender_throughput"] = rrows

    a, r = result["text_encoder_agreement"], result["recommender_agreement"]
    result["verdict"] = {
        "band_agrees": a["band_reading_agreement"] >= MIN_AGREEMENT,
        "intent_agrees": a["intent_argmax_agreement"] >= MIN_AGREEMENT,
        "recommender_top1_agrees": r["top1_agreement"] >= MIN_AGREEMENT,
        "shapes_in_trt_profiles": all(x["in_trt_profile"] for x in rows + rrows),
        "config_precision": {m: p.precision for m, p in profiles.items()},
        "min_agreement": MIN_AGREEMENT,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu_check.md").write_text(render(result))
    return result


def _device_info(device: str) -> dict[str, str]:
    import torch

    info = {"device": device, "torch": torch.__version__, "python": platform.python_version()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = str(torch.version.cuda)
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ",".join(ort.get_available_providers())
    except ImportError:
        info["onnxruntime_providers"] = "not installed"
    info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return info


def render(result: dict[str, Any]) -> str:
    d, a, r, v = (
        result["device"],
        result["text_encoder_agreement"],
        result["recommender_agreement"],
        result["verdict"],
    )
    lines = [
        "# GPU check: served models in " + result["precision"],
        "",
        f"{d.get('gpu', d['device'])}, torch {d['torch']}, {d['date']}; onnxruntime providers: "
        f"{d['onnxruntime_providers']}{' (quick dry run)' if result['quick'] else ''}.",
        "",
        f"text encoder vs CPU fp32 on {a['texts']} real texts: max |diff| "
        + ", ".join(f"{k} {x:.2g}" for k, x in a["max_abs_diff"].items())
        + f"; neutral-band reading agrees on {a['band_reading_agreement']:.1%}, intent argmax on"
        f" {a['intent_argmax_agreement']:.1%}.",
        f"recommender vs CPU fp32 on {r['histories']} histories: max score diff {r['max_abs_score_diff']:.2g},"
        f" top-1 agrees on {r['top1_agreement']:.1%}, top-k overlap {r['topk_overlap']:.1%}.",
        "",
        "| model | batch | length | ms | per s | in TensorRT profile |",
        "|---|---|---|---|---|---|",
    ]
    for model, key, unit in (
        ("text_encoder", "text_encoder_throughput", "texts_per_s"),
        ("recommender", "recommender_throughput", "requests_per_s"),
    ):
        for row in result[key]:
            lines.append(
                f"| {model} | {row['batch']} | {row['length']} | {row['ms']:.2f} | {row[unit]:.0f} |"
                f" {'yes' if row['in_trt_profile'] else 'NO'} |"
            )
    lines += ["", "verdict: " + ", ".join(f"{k} {x}" for k, x in v.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m triton_models.gpu_check", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write the bundle (here, on the CPU)")
    p.add_argument("--bundle", type=Path, default=BUNDLE)
    r = sub.add_parser("run", help="run the check (on the GPU machine)")
    r.add_argument("--bundle", type=Path, default=BUNDLE)
    r.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", REPO_ROOT / "build" / "gpu_check_out"))
    )
    r.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    r.add_argument(
        "--precision",
        choices=("fp16", "bf16", "fp32"),
        default=None,
        help="default: fp16 on cuda, fp32 on cpu (CPU autocast has no fp16 matmul)",
    )
    r.add_argument("--quick", action="store_true", help="two batches and small shapes: a dry run")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logging.getLogger("triton_models").addHandler(handler)
    logging.getLogger("triton_models").setLevel(logging.INFO)
    logging.getLogger("triton_models").propagate = False
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if args.command == "prepare":
            prepare(args.bundle)
            return 0
        precision = args.precision or ("fp16" if args.device == "cuda" else "fp32")
        result = run(args.bundle, args.out, args.device, precision, args.quick)
    except (GpuCheckError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 1
    print(render(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
