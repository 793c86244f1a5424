"""Settings: environment, validation, secrets, and the Kafka client configuration built from them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stack.local import settings_env
from streams.settings import Settings


def test_environment_prefix_and_topic_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MS_KAFKA_BOOTSTRAP", "10.0.0.1:9092")
    monkeypatch.setenv("MS_TOPIC_PREFIX", "staging-")
    s = Settings()
    assert s.confluent_config()["bootstrap.servers"] == "10.0.0.1:9092"
    assert s.topics.chat == "staging-chat" and s.topics.dlq(s.topics.chat) == "staging-chat.dlq"
    assert s.faust_app_id == "staging-marketing-scorer"
    assert len(set(s.topics.all())) == 15  # 4 inputs + 1 internal, 5 outputs, 5 dead-letter topics


def test_sasl_needs_credentials_and_keeps_the_password_secret() -> None:
    with pytest.raises(ValidationError, match="SASL needs"):
        Settings(kafka_security_protocol="SASL_PLAINTEXT")
    s = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="scorer",
        kafka_sasl_password="hunter2",
    )
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    conf = s.confluent_config()
    assert conf["sasl.password"] == "hunter2" and conf["sasl.mechanism"] == "SCRAM-SHA-256"
    creds = s.faust_broker_kwargs()["broker_credentials"]
    assert creds.username == "scorer"


def test_neutral_band_must_be_ordered() -> None:
    with pytest.raises(ValidationError):
        Settings(neutral_band=(0.7, 0.3))


def test_settings_survive_the_trip_to_a_child_process(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(
        topic_prefix="t-",
        partitions=2,
        neutral_band=(0.3, 0.6),
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    for key, value in settings_env(original).items():
        monkeypatch.setenv(key, value)
    assert Settings() == original
