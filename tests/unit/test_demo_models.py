"""Which text encoder `make demo` serves (`build.resolve_auto`: never a downgrade, quick only
when the machine has no fine-tune) and what the demo says about it (stack/served.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import triton_models
from stack import served
from triton_models import build
from triton_models import text_encoder_train as tt


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Version folders and stamps in a temporary checkout; an empty model cache."""
    package = tmp_path / "triton_models"
    stamps = tmp_path / "build" / "stamps"
    monkeypatch.setattr(triton_models, "PACKAGE_DIR", package)
    monkeypatch.setattr(triton_models, "STAMP_DIR", stamps)
    monkeypatch.setattr(build, "STAMP_DIR", stamps)
    monkeypatch.setattr(build, "REPO_ROOT", tmp_path)
    monkeypatch.setenv(tt.CACHE_ENV, str(tmp_path / "cache"))
    served.training_of.cache_clear()
    return tmp_path


def _version(repo: Path, version: int, training: str) -> None:
    folder = repo / "triton_models" / "text_encoder" / str(version)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(f"weights {version}".encode())
    card = {
        "inputs": f"inputs-{version}",
        "sha256": build.file_sha256(folder / "model.onnx"),
        "training": training,
        "details": {"sentiment_test_accuracy": 0.775, "intent_test_macro_f1": 0.843},
    }
    (folder / "card.json").write_text(json.dumps(card))


def test_auto_is_quick_on_a_machine_without_a_fine_tune(repo: Path) -> None:
    assert build.resolve_auto() == ("quick", None)
    _version(repo, 1, "quick")
    assert build.resolve_auto() == ("quick", None)


def test_auto_keeps_a_fast_version_rather_than_build_a_weaker_quick_one(repo: Path) -> None:
    _version(repo, 1, "fast")
    _version(repo, 2, "quick")
    assert build.resolve_auto() == ("fast", 1)


def test_auto_serves_a_built_full_version_over_newer_quick_and_fast_ones(repo: Path) -> None:
    _version(repo, 1, "fast")
    _version(repo, 2, "full")
    _version(repo, 3, "quick")
    _version(repo, 4, "fast")
    assert build.resolve_auto() == ("full", 2)
    result = build.select_version("text_encoder", 2)
    assert result.status == "selected" and triton_models.current_version("text_encoder") == 2
    assert served.upgrade_hint() is None
    assert "full fine-tune" in served.served_text_encoder()


def test_auto_builds_full_when_the_cache_holds_the_fine_tune(repo: Path) -> None:
    _version(repo, 1, "quick")
    _version(repo, 2, "fast")
    entry = tt.cache_dir(tt.training_key(build.text_encoder_config("full")))
    entry.mkdir(parents=True)
    (entry / tt.CHECKPOINT_NAME).write_bytes(b"weights")
    (entry / tt.METRICS_NAME).write_text("{}")
    assert build.resolve_auto() == ("full", None)


def test_the_demo_says_it_served_the_quick_model_and_how_to_swap_in_the_full_one(repo: Path) -> None:
    _version(repo, 1, "quick")
    _version(repo, 2, "quick")
    build.select_version("text_encoder", 2)
    line = served.served_text_encoder()
    assert line.startswith("text_encoder v2 (quick") and "77.5%" in line and "0.843" in line
    hint = served.upgrade_hint()
    assert hint is not None and "make models" in hint
    assert f"models serve text_encoder 3 --config {served.SWAP_CONFIG}" in hint
    assert served.training_of("text_encoder", 2) == "quick"
