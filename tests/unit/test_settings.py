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
    assert len(set(s.topics.all())) == 19  # 5 inputs + 1 internal, 7 outputs, 6 dead-letter topics


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


SASL = {
    "kafka_security_protocol": "SASL_PLAINTEXT",
    "kafka_sasl_mechanism": "PLAIN",
    "kafka_sasl_username": "scorer",
    "kafka_sasl_password": "hunter2-secret",
}


def test_the_password_stays_out_of_repr_str_json_and_validation_errors() -> None:
    s = Settings(**SASL)  # type: ignore[arg-type]
    shown = [
        repr(s),
        str(s),
        s.model_dump_json(),
        str(s.model_dump()),
        repr(s.faust_broker_kwargs()["broker_credentials"]),
    ]
    assert not [text for text in shown if "hunter2-secret" in text]
    # pydantic prints every input of a failed model by default, the password among them
    with pytest.raises(ValidationError) as info:
        Settings(**SASL, partitions=0)  # type: ignore[arg-type]
    assert "partitions" in str(info.value) and "hunter2-secret" not in str(info.value)


@pytest.mark.parametrize("missing", ["kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"])
def test_sasl_without_a_credential_is_a_clear_error(missing: str) -> None:
    values = {k: v for k, v in SASL.items() if k != missing}
    with pytest.raises(ValidationError, match="SASL needs kafka_sasl_mechanism, kafka_sasl_username") as info:
        Settings(**values)  # type: ignore[arg-type]
    assert "hunter2-secret" not in str(info.value)


def test_sasl_keys_only_with_a_sasl_protocol() -> None:
    """librdkafka and Faust must agree: a mechanism set next to PLAINTEXT configures no SASL."""
    conf = Settings(kafka_sasl_mechanism="PLAIN", kafka_sasl_username="scorer").confluent_config()
    assert conf["security.protocol"] == "PLAINTEXT" and not any(k.startswith("sasl.") for k in conf)
    tls = Settings(**{**SASL, "kafka_security_protocol": "SASL_SSL"}).confluent_config()  # type: ignore[arg-type]
    assert tls["security.protocol"] == "SASL_SSL" and tls["sasl.username"] == "scorer"
