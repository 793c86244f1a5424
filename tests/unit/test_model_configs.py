"""Every config.pbtxt of both profiles parses as a Triton ModelConfig and agrees with the contracts.

A broken or drifting config then fails CI on a machine without a GPU or a Triton server: the
canonical (GPU) configs are parsed as committed, the CPU profile is generated into a temporary
folder (no ONNX files needed), and both are checked against labels.json / spec.json.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import triton_models
from triton_models import configs

INTENTS = [
    "order_status",
    "shipping_delay",
    "return_refund",
    "cancel_order",
    "payment_issue",
    "product_question",
    "discount_promo",
    "account_login",
    "complaint",
    "compliment",
    "human_agent",
    "greeting",
    "other",
]


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def tensors(values: object) -> list[tuple[str, str, list[int]]]:
    return [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in values]  # type: ignore[attr-defined]


def trt_parameters(cfg: mc.ModelConfig) -> dict[str, str]:
    accelerators = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    (trt,) = [a for a in accelerators if a.name == "tensorrt"]
    return dict(trt.parameters)


def shapes(spec: str) -> dict[str, list[int]]:
    """'a:1x2,b:3x4' -> {'a': [1, 2], 'b': [3, 4]} (onnxruntime's TensorRT profile syntax)."""
    out = {}
    for part in spec.split(","):
        name, dims = part.split(":")
        out[name] = [int(d) for d in dims.split("x")]
    return out


@pytest.fixture(scope="module")
def canonical() -> dict[str, mc.ModelConfig]:
    return {p.parent.name: parse(p) for p in sorted(triton_models.PACKAGE_DIR.glob("*/config.pbtxt"))}


@pytest.fixture(scope="module")
def cpu(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, mc.ModelConfig]]:
    dest = tmp_path_factory.mktemp("triton-cpu")
    written = configs.write_cpu_repository(dest, threads=1)
    assert sorted(p.parent.name for p in written) == sorted(triton_models.MODEL_NAMES)
    return dest, {p.parent.name: parse(p) for p in sorted(dest.glob("*/config.pbtxt"))}


@pytest.fixture(scope="module")
def labels() -> dict[str, Any]:
    return triton_models.load_labels()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return triton_models.load_recommender_spec()


def test_canonical_repository_holds_exactly_the_models(canonical: dict[str, mc.ModelConfig]) -> None:
    assert sorted(canonical) == sorted(triton_models.MODEL_NAMES)
    for name, cfg in canonical.items():
        assert cfg.name == name, "Triton requires the config name to match its folder"


def test_canonical_configs_are_the_gpu_profile(canonical: dict[str, mc.ModelConfig]) -> None:
    for name, cfg in canonical.items():
        assert cfg.platform == "onnxruntime_onnx" and not cfg.backend, name
        assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 1)], name
        assert cfg.max_batch_size == 64, name
        assert trt_parameters(cfg)["precision_mode"] == "FP16", name
        batching = cfg.dynamic_batching
        assert 0 < batching.max_queue_delay_microseconds <= 5000, name
        policy = batching.default_queue_policy
        assert policy.max_queue_size > 0 and policy.default_timeout_microseconds > 0, name
        assert policy.allow_timeout_override, name
        assert policy.timeout_action == mc.ModelQueuePolicy.REJECT, name


def test_cpu_profile_is_derived_from_the_canonical_one(
    canonical: dict[str, mc.ModelConfig], cpu: tuple[Path, dict[str, mc.ModelConfig]]
) -> None:
    dest, generated = cpu
    assert sorted(generated) == sorted(canonical)
    for name, cfg in generated.items():
        gpu = canonical[name]
        assert cfg.name == name
        assert cfg.backend == "python" and not cfg.platform
        assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
        assert not cfg.HasField("optimization") and not cfg.model_warmup
        assert tensors(cfg.input) == tensors(gpu.input)
        assert tensors(cfg.output) == tensors(gpu.output)
        assert cfg.max_batch_size == gpu.max_batch_size
        assert cfg.dynamic_batching == gpu.dynamic_batching
        # Variable-length inputs may be merged by the batcher; the python model pads them.
        assert all(t.allow_ragged_batch for t in cfg.input if -1 in t.dims)

        params = {k: v.string_value for k, v in cfg.parameters.items()}
        assert int(params[configs.PARAM_THREADS]) >= 1
        version_dir = dest / name / str(triton_models.current_version(name))
        # The text encoder may be served as its INT8 file (test_quantize.py covers the choice).
        served = {triton_models.onnx_path(name)}
        if name == triton_models.TEXT_ENCODER:
            served.add(triton_models.onnx_path(name).with_name("model.int8.onnx"))
        assert configs.resolve_onnx(version_dir, params[configs.PARAM_ONNX]) in served
        pads = json.loads(params[configs.PARAM_PAD])
        assert set(pads) == {t.name for t in cfg.input}
        assert (version_dir / "model.py").read_bytes() == configs.CPU_MODEL_PY.read_bytes()


def test_generated_file_is_what_triton_reads(cpu: tuple[Path, dict[str, mc.ModelConfig]]) -> None:
    dest, generated = cpu
    for name in generated:
        text = (dest / name / "config.pbtxt").read_text()
        assert text.startswith("# GENERATED")
        assert parse(dest / name / "config.pbtxt") == configs.load_config(dest / name / "config.pbtxt")


def test_text_encoder_tensors_match_labels(
    canonical: dict[str, mc.ModelConfig], labels: dict[str, Any]
) -> None:
    cfg = canonical[triton_models.TEXT_ENCODER]
    tokenizer = labels["tokenizer"]
    assert tensors(cfg.input) == [(name, "TYPE_INT64", [-1]) for name in tokenizer["inputs"]]
    assert [t.name for t in cfg.input] == ["input_ids", "attention_mask"]
    assert labels["sentiment"] == ["negative", "positive"]
    assert labels["intents"] == INTENTS
    outputs = labels["outputs"]
    assert tensors(cfg.output) == [
        (outputs["sentiment"], "TYPE_FP32", [len(labels["sentiment"])]),
        (outputs["intents"], "TYPE_FP32", [len(labels["intents"])]),
        (outputs["embedding"], "TYPE_FP32", [labels["embedding_dim"]]),
    ]
    assert tensors(cfg.output) == [
        ("sentiment_probs", "TYPE_FP32", [2]),
        ("intent_probs", "TYPE_FP32", [13]),
        ("embedding", "TYPE_FP32", [384]),
    ]


def test_text_encoder_tensorrt_profile_covers_the_contract(
    canonical: dict[str, mc.ModelConfig], labels: dict[str, Any]
) -> None:
    cfg = canonical[triton_models.TEXT_ENCODER]
    params = trt_parameters(cfg)
    max_len = labels["tokenizer"]["max_length"]
    assert shapes(params["trt_profile_max_shapes"]) == {
        "input_ids": [cfg.max_batch_size, max_len],
        "attention_mask": [cfg.max_batch_size, max_len],
    }
    assert set(shapes(params["trt_profile_min_shapes"])) == {t.name for t in cfg.input}
    (warmup,) = cfg.model_warmup
    assert warmup.batch_size == cfg.max_batch_size
    assert {k: list(v.dims) for k, v in warmup.inputs.items()} == {
        "input_ids": [max_len],
        "attention_mask": [max_len],
    }


def test_labels_pad_id_matches_the_tokenizer(labels: dict[str, Any]) -> None:
    from tokenizers import Tokenizer

    tokenizer = labels["tokenizer"]
    tok = Tokenizer.from_file(str(triton_models.minilm_path() / "tokenizer.json"))
    assert tok.token_to_id(tokenizer["pad_token"]) == tokenizer["pad_id"]
    assert configs.pad_values(triton_models.TEXT_ENCODER) == {
        "input_ids": tokenizer["pad_id"],
        "attention_mask": 0,
    }


def test_recommender_tensors_match_spec(canonical: dict[str, mc.ModelConfig], spec: dict[str, Any]) -> None:
    cfg = canonical[triton_models.RECOMMENDER]
    assert tensors(cfg.input) == [(spec["input"], "TYPE_INT64", [-1])]
    outputs = spec["outputs"]
    assert tensors(cfg.output) == [
        (outputs["items"], "TYPE_INT64", [spec["top_k"]]),
        (outputs["scores"], "TYPE_FP32", [spec["top_k"]]),
    ]
    assert tensors(cfg.output) == [("top_items", "TYPE_INT64", [20]), ("top_scores", "TYPE_FP32", [20])]
    params = trt_parameters(cfg)
    assert shapes(params["trt_profile_max_shapes"]) == {"item_ids": [cfg.max_batch_size, spec["max_history"]]}
    assert configs.pad_values(triton_models.RECOMMENDER) == {"item_ids": spec["pad_id"]}


def test_cpu_config_refuses_an_input_without_pad_value(canonical: dict[str, mc.ModelConfig]) -> None:
    with pytest.raises(ValueError, match="no pad value"):
        configs.cpu_config(canonical[triton_models.TEXT_ENCODER], "model.onnx", 1, {"input_ids": 0})


def _load_python_model(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Import cpu/python_onnx_model.py outside Triton, with a stand-in for the backend utils."""
    monkeypatch.setitem(
        sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils")
    )
    spec = importlib.util.spec_from_file_location("python_onnx_model", configs.CPU_MODEL_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_model_pads_requests_of_different_lengths(monkeypatch: pytest.MonkeyPatch) -> None:
    pad_and_concat = _load_python_model(monkeypatch).pad_and_concat
    a = np.array([[1, 2, 3]], dtype=np.int64)
    b = np.array([[4, 5], [6, 7]], dtype=np.int64)
    merged = pad_and_concat([a, b], 0)
    assert merged.dtype == np.int64
    assert merged.tolist() == [[1, 2, 3], [4, 5, 0], [6, 7, 0]]
    assert pad_and_concat([a], 9) is a
