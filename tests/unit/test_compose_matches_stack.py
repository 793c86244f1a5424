"""docker-compose.yml describes the same system as the embedded stack: same Kafka version and
broker semantics, the same settings names, the same model repository."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from stack.compose import broker_properties
from stack.kafka import KAFKA_VERSION, KafkaServer
from streams.settings import Settings
from tests.unit.test_compose import COMPOSE_FILE, REPO, TEST_OVERRIDE, load_compose

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
    for name in ("topics", "worker", "gateway", "producer"):
        env = project["services"][name]["environment"]
        assert set(env) <= fields, (name, set(env) - fields)
        assert env["MS_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert project["services"]["topics"]["command"] == ["python", "-m", "streams", "create-topics"]
    assert project["services"]["gateway"]["command"] == ["python", "-m", "streams", "gateway"]
    # the worker signs the notice URLs the gateway verifies: the same keys reach both
    for name in ("worker", "gateway"):
        assert project["services"][name]["environment"]["MS_NOTICE_BASE_URL"].endswith(
            Settings().gateway_notice_path
        ), name


def test_triton_serves_the_canonical_repository_on_a_gpu(project: dict[str, Any]) -> None:
    triton = project["services"]["triton"]
    # generated from triton_models/ by the build: the canonical configs with the version cards
    assert any(
        v["target"] == "/models" and v["source"].endswith("build/triton-gpu") for v in triton["volumes"]
    )
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert "24.10" in triton["image"]  # Triton 2.51, the version the CPU profile runs


def test_the_test_deployments_broker_runs_the_local_brokers_settings(tmp_path: Any) -> None:
    """The kafka image's server.properties is stack/kafka.py's (python -m stack.compose), with the
    service's KAFKA_* environment applied on top by the image's env-properties.sh: the result is
    the local broker's configuration, key for key."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT"):
            env.delenv(name, raising=False)
        kafka = load_compose(COMPOSE_FILE, TEST_OVERRIDE)["services"]["kafka"]
    base = tmp_path / "server.properties"
    base.write_text(broker_properties())
    script = REPO / "docker" / "kafka" / "env-properties.sh"
    environment = {"PATH": "/usr/bin:/bin", **{k: str(v) for k, v in kafka["environment"].items()}}
    done = subprocess.run(["sh", str(script), str(base)], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    def parse(text: str) -> dict[str, str]:
        props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
        mapping = "listener.security.protocol.map"  # a set of pairs: order is not meaning
        props[mapping] = ",".join(sorted(props[mapping].split(",")))
        return props

    server = KafkaServer(state_dir=tmp_path)
    server._data_dir = Path("/var/lib/kafka/data")  # the production file's volume
    assert parse(done.stdout) == parse(server._render_properties())
