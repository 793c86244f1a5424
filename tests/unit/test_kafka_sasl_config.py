"""The SASL broker configuration stack/kafka.py writes (rendered only; the integration test
tests/integration/test_kafka_sasl.py starts it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.kafka import BROKER_USER, KafkaServer


def _props(server: KafkaServer, tmp_path: Path) -> dict[str, str]:
    server._data_dir = tmp_path / "data"  # rendering only; nothing is started
    return dict(line.split("=", 1) for line in server._render_properties().splitlines() if "=" in line)


def test_sasl_users_make_the_client_listener_sasl_plaintext(tmp_path: Path) -> None:
    server = KafkaServer(state_dir=tmp_path, port=19092, sasl_users={"scorer": "s3cret-pw"})
    props = _props(server, tmp_path)
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    jaas = props["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert 'user_scorer="s3cret-pw"' in jaas and f'username="{BROKER_USER}"' in jaas
    assert server.client_security()["sasl.username"] == BROKER_USER
    assert "s3cret-pw" not in repr(server)


def test_without_sasl_users_nothing_changes(tmp_path: Path) -> None:
    props = _props(KafkaServer(state_dir=tmp_path), tmp_path)
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert not any("sasl" in key for key in props)
    assert KafkaServer(state_dir=tmp_path).client_security() == {}


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ({BROKER_USER: "x"}, "reserved"),
        ({"bad name": "x"}, "must match"),
        ({"scorer": 'has"quote'}, "printable ASCII"),
    ],
)
def test_unsafe_sasl_users_are_refused_without_echoing_the_password(
    tmp_path: Path, users: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        KafkaServer(state_dir=tmp_path, sasl_users=users)
    assert 'has"quote' not in str(info.value)
