"""The INT8 decision logic of triton_models.quantize and the pure parts of triton_models.gpu_check.

Expected values are worked out by hand in each test, not by the code under test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from triton_models import canonical_config_path, gpu_check, quantize


def test_in_domain_metrics_by_hand() -> None:
    # band [0.3, 0.7]; posts: pos 0.9 (right), pos 0.5 (inside), neg 0.8 (flipped), neg 0.1 (right),
    # neutral 0.6 (inside), neutral 0.95 (outside)
    p = np.array([0.9, 0.5, 0.8, 0.1, 0.6, 0.95])
    y = ["positive", "positive", "negative", "negative", "neutral", "neutral"]
    m = quantize.in_domain_metrics(p, y, (0.3, 0.7))
    # argmax on the 4 polar posts: 0.9 right, 0.5 -> negative (wrong), 0.8 wrong, 0.1 right
    assert m["polar_accuracy"] == pytest.approx(0.5)
    assert m["polar_inside_band"] == pytest.approx(0.25)
    assert m["neutral_inside_band"] == pytest.approx(0.5)
    assert m["polar_flipped"] == 1
    assert (m["polar"], m["neutral"]) == (4, 2)


def test_band_edges_count_as_inside() -> None:
    m = quantize.in_domain_metrics(np.array([0.25, 0.75]), ["neutral", "neutral"], (0.25, 0.75))
    assert m["neutral_inside_band"] == 1.0
    assert list(gpu_check.band_reading(np.array([0.24, 0.25, 0.75, 0.76]), (0.25, 0.75))) == [-1, 0, 0, 1]


def _valid(rt: float, intent: float) -> dict[str, float]:
    return {"rt_valid_accuracy": rt, "intent_valid_accuracy": intent}


def test_choose_takes_the_fastest_within_the_bound() -> None:
    valid = {
        "fp32": _valid(0.80, 0.90),
        "a": _valid(0.795, 0.90),
        "b": _valid(0.80, 0.88),
        "c": _valid(0.80, 0.90),
    }
    speed = {"fp32": 1.0, "a": 3.0, "b": 9.0, "c": 2.0}
    # b loses 2 points of intent accuracy: out, however fast; a is within 0.5 points and faster than c
    assert quantize.choose(valid, speed) == "a"


def test_choose_falls_back_to_the_smallest_worst_loss() -> None:
    valid = {"fp32": _valid(0.80, 0.90), "a": _valid(0.77, 0.90), "b": _valid(0.78, 0.89)}
    # worst losses: a 3 points, b 2 points
    assert quantize.choose(valid, {"fp32": 1.0, "a": 5.0, "b": 2.0}) == "b"


def _scores(rt: float, intent: float, polar: float) -> dict[str, object]:
    return {"rt_test_accuracy": rt, "intent_test_accuracy": intent, "in_domain": {"polar_accuracy": polar}}


def test_verdict_needs_both_targets() -> None:
    fp32 = _scores(0.80, 0.90, 0.70)
    ok = quantize.verdict(fp32, _scores(0.795, 0.91, 0.70), speedup=2.0)
    assert ok["accuracy_met"] and ok["speedup_met"] and ok["serve_int8"]
    slow = quantize.verdict(fp32, _scores(0.80, 0.90, 0.70), speedup=1.7)
    assert not slow["serve_int8"] and slow["accuracy_met"]
    lossy = quantize.verdict(fp32, _scores(0.80, 0.90, 0.68), speedup=3.0)  # 2 points in domain
    assert not lossy["serve_int8"] and lossy["speedup_met"]
    assert lossy["accuracy_loss"]["in_domain_polar_accuracy"] == pytest.approx(0.02)


def _record(tmp_path: Path, fp32: bytes, int8: bytes, serve: bool) -> tuple[Path, Path]:
    version = tmp_path / "1"
    version.mkdir()
    (version / "model.onnx").write_bytes(fp32)
    (version / quantize.INT8_FILENAME).write_bytes(int8)
    record = {
        "verdict": {"serve_int8": serve},
        "sha256": {"fp32": hashlib.sha256(fp32).hexdigest(), "int8": hashlib.sha256(int8).hexdigest()},
    }
    metrics = tmp_path / "int8.json"
    metrics.write_text(json.dumps(record))
    return version, metrics


def test_served_filename_is_int8_only_for_a_matching_passing_record(tmp_path: Path) -> None:
    version, metrics = _record(tmp_path, b"fp32 model", b"int8 model", serve=True)
    assert quantize.served_filename(version, metrics) == quantize.INT8_FILENAME
    (version / quantize.INT8_FILENAME).write_bytes(b"another int8 model")  # re-quantised, not measured
    assert quantize.served_filename(version, metrics) == "model.onnx"


def test_served_filename_is_fp32_when_a_target_was_missed_or_nothing_was_measured(tmp_path: Path) -> None:
    version, metrics = _record(tmp_path, b"fp32 model", b"int8 model", serve=False)
    assert quantize.served_filename(version, metrics) == "model.onnx"
    assert quantize.served_filename(version, tmp_path / "missing.json") == "model.onnx"


def test_gpu_check_shapes_come_from_the_tensorrt_profile() -> None:
    text = gpu_check.gpu_profile("text_encoder", canonical_config_path("text_encoder"))
    # config.pbtxt: max_batch_size 64, profile 1x1 .. 32x64 (opt) .. 64x128, FP16
    assert (text.max_batch_size, text.min_shape, text.opt_shape, text.max_shape) == (
        64,
        (1, 1),
        (32, 64),
        (64, 128),
    )
    assert text.precision == "FP16"
    assert gpu_check.batch_sizes(text) == [1, 8, 16, 32, 64]
    assert text.covers(64, 128) and not text.covers(65, 16) and not text.covers(8, 129)
    rec = gpu_check.gpu_profile("recommender", canonical_config_path("recommender"))
    assert rec.max_shape == (64, 50) and rec.covers(32, 50)


def test_gpu_check_rejects_a_profile_whose_inputs_disagree() -> None:
    with pytest.raises(gpu_check.GpuCheckError):
        gpu_check._shape("input_ids:32x64,attention_mask:32x32")


def test_topk_overlap_by_hand() -> None:
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = np.array([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert gpu_check.topk_overlap(a, b) == pytest.approx((2 / 4 + 4 / 4) / 2)


def test_gpu_check_profile_survives_the_manifest_round_trip() -> None:
    profile = gpu_check.gpu_profile("text_encoder", canonical_config_path("text_encoder"))
    assert gpu_check._profile(json.loads(json.dumps(profile.__dict__))) == profile


def test_chosen_setting_reads_the_record_and_defaults_without_one(tmp_path: Path) -> None:
    metrics = tmp_path / "int8.json"
    metrics.write_text(json.dumps({"chosen": "QUInt8"}))
    assert quantize.chosen_setting(metrics) == ("QUInt8", False)
    metrics.write_text(json.dumps({"chosen": "QInt8-per-channel"}))
    assert quantize.chosen_setting(metrics) == ("QInt8", True)
    assert quantize.chosen_setting(tmp_path / "missing.json") == quantize.DEFAULT_SETTING


def test_choose_counts_every_selection_set() -> None:
    fp32 = {**_valid(0.80, 0.90), "in_domain_valid_accuracy": 0.80}
    fast = {**_valid(0.80, 0.90), "in_domain_valid_accuracy": 0.78}  # 2 points off in domain
    slow = {**_valid(0.80, 0.90), "in_domain_valid_accuracy": 0.80}
    assert quantize.choose({"fp32": fp32, "fast": fast, "slow": slow}, {"fast": 3.0, "slow": 2.0}) == "slow"


@pytest.mark.parametrize("served", ["model.onnx", quantize.INT8_FILENAME])
def test_the_cpu_profile_points_the_text_encoder_at_the_served_file(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triton_models import configs

    monkeypatch.setattr(quantize, "served_filename", lambda version_dir: served)
    written = configs.write_cpu_repository(tmp_path, threads=1)
    params = {
        p.parent.name: configs.load_config(p).parameters[configs.PARAM_ONNX].string_value for p in written
    }
    assert params["text_encoder"].endswith("/text_encoder/{version}/" + served)
    assert params["recommender"].endswith("/recommender/{version}/model.onnx")
