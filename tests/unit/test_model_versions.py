"""Model versions side by side: the build's numbering and cards, the migration of a model built
before versions, and the served configs that carry every version's card (read by the worker)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

import triton_models
from streams.errors import ConfigError
from streams.labels import text_labels_of, version_card
from triton_models import build, configs

MODELS = triton_models.MODEL_NAMES


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout copy: the canonical configs and contracts, small stand-in ONNX files, stamps."""
    package = tmp_path / "triton_models"
    for model in MODELS:
        (package / model).mkdir(parents=True)
        shutil.copyfile(triton_models.canonical_config_path(model), package / model / "config.pbtxt")
    shutil.copyfile(triton_models.RECOMMENDER_SPEC_FILE, package / "recommender" / "spec.json")
    stamps = tmp_path / "build" / "stamps"
    for module in (triton_models, configs):
        monkeypatch.setattr(module, "PACKAGE_DIR", package)
    monkeypatch.setattr(triton_models, "STAMP_DIR", stamps)
    monkeypatch.setattr(build, "STAMP_DIR", stamps)
    monkeypatch.setattr(build, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(triton_models, "RECOMMENDER_SPEC_FILE", package / "recommender" / "spec.json")
    return tmp_path


def _old_build(repo: Path, model: str, content: bytes) -> Path:
    """What a build before versions left: `1/model.onnx` and a stamp recording its hash."""
    onnx = repo / "triton_models" / model / "1" / "model.onnx"
    onnx.parent.mkdir(parents=True)
    onnx.write_bytes(content)
    rel = str(onnx.relative_to(repo))
    details = {"neutral_band": [0.22, 0.78]} if model == "text_encoder" else {"hr10": 0.3}
    stamp = {"inputs": f"old-{model}", "outputs": {rel: build.file_sha256(onnx)}, "details": details}
    if model == "text_encoder":
        stamp["training"] = "fast"
    build._write_stamp(model, stamp)
    return onnx


def test_a_model_built_before_versions_stays_version_1_with_a_card(repo: Path) -> None:
    onnx = _old_build(repo, "text_encoder", b"weights-1")
    assert build.migrate_unversioned("text_encoder")
    card = triton_models.load_card("text_encoder", 1)
    assert card is not None
    assert card["version"] == 1 and card["inputs"] == "old-text_encoder" and card["training"] == "fast"
    assert card["sha256"] == build.file_sha256(onnx)
    # the labels it was served with: the repository's labels.json at the time
    assert card["labels"] == json.loads(triton_models.LABELS_FILE.read_text())
    assert triton_models.current_version("text_encoder") == 1
    assert onnx.read_bytes() == b"weights-1"  # untouched: no retraining, no re-export
    assert not build.migrate_unversioned("text_encoder")  # once


def test_a_stamp_that_does_not_describe_the_file_is_not_trusted(repo: Path) -> None:
    onnx = _old_build(repo, "recommender", b"weights-1")
    onnx.write_bytes(b"changed since")
    assert not build.migrate_unversioned("recommender")
    assert triton_models.load_card("recommender", 1) is None


def _checked(repo: Path, model: str, content: bytes, version: int) -> Path:
    tmp = repo / "triton_models" / model / str(version) / "model.onnx.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(content)
    return tmp


def test_a_changed_model_is_a_new_version_and_an_identical_export_is_not(repo: Path) -> None:
    _old_build(repo, "recommender", b"weights-1")
    build.migrate_unversioned("recommender")
    assert build.next_version("recommender") == 2
    # the same bytes again (an edit of the build that changed nothing): still version 1
    assert build.install("recommender", _checked(repo, "recommender", b"weights-1", 2), 2) == 1
    assert triton_models.versions("recommender") == [1]
    assert not (repo / "triton_models" / "recommender" / "2").exists()
    # other bytes: version 2 beside version 1, which is not overwritten
    assert build.install("recommender", _checked(repo, "recommender", b"weights-2", 2), 2) == 2
    assert triton_models.versions("recommender") == [1, 2]
    assert triton_models.onnx_path("recommender", 1).read_bytes() == b"weights-1"
    card = build._new_card("recommender", 2, "new-inputs", {"hr10": 0.31})
    build.write_card("recommender", 2, card)
    # inputs select their version again (fast <-> full training switches back and forth)
    assert build.matching_version("recommender", "new-inputs") == 2
    assert build.matching_version("recommender", "old-recommender") == 1
    assert build.matching_version("recommender", "never-built") is None
    triton_models.onnx_path("recommender", 2).write_bytes(b"corrupted")
    assert build.matching_version("recommender", "new-inputs") is None  # its bytes changed


def _two_versions(repo: Path) -> None:
    for model in MODELS:
        _old_build(repo, model, b"weights-1")
        build.migrate_unversioned(model)
        build.install(model, _checked(repo, model, b"weights-2", 2), 2)
        card = build._new_card(model, 2, "v2", {"note": "second"}, labels=_labels_with_band(0.3, 0.7))
        build.write_card(model, 2, card)
        build._write_stamp(model, build._version_stamp(model, 2, card))


def _labels_with_band(low: float, high: float) -> dict[str, object]:
    return json.loads(triton_models.LABELS_FILE.read_text()) | {"neutral_band": [low, high]}


def _as_served(cfg: mc.ModelConfig) -> dict[str, object]:
    """The config as get_model_config(..., as_json=True) returns it."""
    return {"config": json_format.MessageToDict(cfg, preserving_proto_field_name=True)}


def test_the_cpu_profile_serves_the_current_version_and_carries_every_card(repo: Path) -> None:
    _two_versions(repo)
    dest = repo / "build" / "triton-cpu"
    written = configs.write_cpu_repository(dest)
    for config_file in written:
        cfg = configs.load_config(config_file)
        model = cfg.name
        assert list(cfg.version_policy.specific.versions) == [2]
        assert sorted(p.name for p in config_file.parent.iterdir() if p.is_dir()) == ["1", "2"]
        onnx = cfg.parameters[configs.PARAM_ONNX].string_value
        for version in (1, 2):
            version_dir = config_file.parent / str(version)
            assert configs.resolve_onnx(version_dir, onnx) == triton_models.onnx_path(model, version)
            assert (version_dir / "model.py").read_bytes() == configs.CPU_MODEL_PY.read_bytes()
            assert version_card(_as_served(cfg), version) == triton_models.load_card(model, version)
    served = _as_served(configs.load_config(dest / "text_encoder" / "config.pbtxt"))
    assert text_labels_of(served, 2).neutral_band == (0.3, 0.7)
    repository_band = json.loads(triton_models.LABELS_FILE.read_text())["neutral_band"]
    assert text_labels_of(served, 1).neutral_band == tuple(repository_band)  # the migrated card's


def test_the_override_swaps_the_version_and_keeps_the_rest(repo: Path) -> None:
    _two_versions(repo)
    (config_file, *_) = configs.write_cpu_repository(repo / "build" / "triton-cpu", models=("text_encoder",))
    cfg = configs.load_config(config_file)
    swapped = configs.serve_version(cfg, 1)
    assert list(swapped.version_policy.specific.versions) == [1]
    swapped.ClearField("version_policy")
    cfg.ClearField("version_policy")
    assert swapped == cfg


def test_the_gpu_profile_links_every_version_and_carries_the_cards(repo: Path) -> None:
    _two_versions(repo)
    dest = repo / "build" / "triton-gpu"
    for config_file in configs.write_gpu_repository(dest):
        cfg = configs.load_config(config_file)
        canonical = configs.load_canonical(cfg.name)
        assert cfg.platform == canonical.platform and cfg.input == canonical.input
        assert list(cfg.version_policy.specific.versions) == [2]
        for version in (1, 2):
            served = config_file.parent / str(version) / "model.onnx"
            assert served.read_bytes() == triton_models.onnx_path(cfg.name, version).read_bytes()
            assert version_card(_as_served(cfg), version)["version"] == version


def test_a_served_version_without_a_card_is_refused() -> None:
    config = {"config": {"name": "text_encoder", "parameters": {}}}
    with pytest.raises(ConfigError, match="version 3 without a card"):
        text_labels_of(config, 3)
    no_labels = {"config": {"name": "text_encoder", "parameters": {"card.3": {"string_value": "{}"}}}}
    with pytest.raises(ConfigError, match="no usable labels"):
        text_labels_of(no_labels, 3)
