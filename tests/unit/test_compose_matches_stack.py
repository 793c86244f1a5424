"""docker-compose.yml describes the same system as the embedded stack: same Kafka version and
broker semantics, the same settings names, the same model repository."""

from __future__ import annotations

from typing import Any

import pytest

from stack.kafka import KAFKA_VERSION, KafkaServer
from streams.settings import Settings
from tests.unit.test_compose import COMPOSE_FILE, load_compose

SEMANTIC_BROKER_KEYS = (
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "group.initial.rebalance.delay.ms",
    "auto.create.topics.enable",
    "process.roles",
)


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return load_compose(COMPOSE_FILE)


def test_kafka_matches_the_local_broker(project: dict[str, Any], tmp_path: Any) -> None:
    kafka = project["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    compose = {
        k.removeprefix("KAFKA_").lower().replace("_", "."): str(v) for k, v in kafka["environment"].items()
    }
    server = KafkaServer(state_dir=tmp_path)
    server._data_dir = tmp_path / "data"  # rendering only; nothing is started
    local = dict(line.split("=", 1) for line in server._render_properties().splitlines() if "=" in line)
    for key in SEMANTIC_BROKER_KEYS:
        assert compose[key] == local[key], key


def test_scorer_services_use_real_settings(project: dict[str, Any]) -> None:
    fields = {f"MS_{name.upper()}" for name in Settings.model_fields}
    for name in ("topics", "worker", "producer"):
        env = project["services"][name]["environment"]
        assert set(env) <= fields, (name, set(env) - fields)
        assert env["MS_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert project["services"]["topics"]["command"] == ["python", "-m", "streams", "create-topics"]


def test_triton_serves_the_canonical_repository_on_a_gpu(project: dict[str, Any]) -> None:
    triton = project["services"]["triton"]
    assert any(v["target"] == "/models" and v["source"].endswith("triton_models") for v in triton["volumes"])
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert "24.10" in triton["image"]  # Triton 2.51, the version the CPU profile runs
