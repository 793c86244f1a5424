"""Kafka with SASL and TLS: a broker whose client listeners are SASL_PLAINTEXT and SASL_SSL
(mechanism PLAIN) refuses clients without valid credentials, or that do not trust its
certificate, while the worker, the producer CLI, the admin calls and the readers, configured only
through `Settings` (MS_* variables), work end to end on either listener.

The broker is a second, throwaway one (the session's stays PLAINTEXT for the other tests) in a
temporary folder, on free ports, with the repository's cached jars and a self-signed certificate
made by keytool; Triton is the session's.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from producers.events import EventFactory
from producers.kafka import produce
from stack.errors import StackError
from stack.kafka import KafkaServer, TlsKeystore, create_topics, make_tls_keystore
from stack.local import REPO, STATE_DIR, LocalStack, WorkerProcess, settings_env
from stack.observe import TopicReader, wait_caught_up
from stack.process import wait_until
from streams.admin import ensure_topics
from streams.schemas import ChatMessage, CsReply
from streams.serde import decode
from streams.settings import Settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("java") is None, reason="the Kafka broker needs java on PATH"),
]

USER = "scorer"
REFUSED_WITHIN_S = 10.0  # a refused client must fail within this, not hang
CATCH_UP_S = 180.0


@dataclass
class SaslKafka:
    server: KafkaServer
    password: str
    tls: TlsKeystore

    def settings(
        self,
        stack: LocalStack,
        password: str | None = None,
        protocol: str = "SASL_PLAINTEXT",
        **overrides: Any,
    ) -> Settings:
        """Settings for this broker (and the session's Triton) with user `scorer`, on the
        SASL_PLAINTEXT listener or the SASL_SSL one (trusting the broker's certificate)."""
        tls = protocol == "SASL_SSL"
        return stack.settings(
            kafka_bootstrap=self.server.tls_bootstrap if tls else self.server.bootstrap,
            kafka_security_protocol=protocol,
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username=USER,
            kafka_sasl_password=password if password is not None else self.password,
            **({"kafka_ssl_cafile": self.tls.cafile} if tls else {}) | overrides,
        )


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslKafka]:
    # Distinctive and random: a leak anywhere is found by a plain substring search.
    password = f"pw-{secrets.token_hex(16)}"
    state = tmp_path_factory.mktemp("sasl-kafka")
    tls = make_tls_keystore(state / "tls")
    server = KafkaServer(
        state_dir=state,
        port=0,  # free ports: never the session broker's
        controller_port=0,
        jar_cache=STATE_DIR,
        sasl_users={USER: password},
        tls=tls,
    )
    try:
        server.start()
        yield SaslKafka(server, password, tls)
    finally:
        server.stop()


def _refused(conf: dict[str, Any]) -> tuple[KafkaError, list[KafkaError], float]:
    """A metadata request with `conf`: the error it fails with, the errors librdkafka reported,
    and how long it took. Fails the test if the request succeeds."""
    reported: list[KafkaError] = []
    client_conf: dict[str, Any] = {
        **conf,
        "error_cb": reported.append,
        "logger": logging.getLogger("tests.sasl.librdkafka"),  # expected failures: not on stderr
    }
    admin = AdminClient(client_conf)
    start = time.monotonic()
    with pytest.raises(KafkaException) as info:
        admin.list_topics(timeout=REFUSED_WITHIN_S)
    took = time.monotonic() - start
    admin.poll(1.0)  # serve the error callbacks queued meanwhile
    return info.value.args[0], reported, took


def _broker_log_since(server: KafkaServer, offset: int) -> str:
    with server.log_path.open("rb") as fh:
        fh.seek(offset)
        return fh.read().decode("utf-8", errors="replace")


def test_a_client_without_credentials_is_refused(local_stack: LocalStack, sasl_kafka: SaslKafka) -> None:
    plain = local_stack.settings(kafka_bootstrap=sasl_kafka.server.bootstrap)  # PLAINTEXT
    offset = sasl_kafka.server.log_path.stat().st_size
    error, _, took = _refused(plain.confluent_config())
    # The broker closes the connection on the first request that is not part of a SASL handshake.
    assert error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), error
    assert took < REFUSED_WITHIN_S + 5
    wait_until(
        lambda: "during SASL handshake" in _broker_log_since(sasl_kafka.server, offset),
        timeout=10.0,
        what="the broker to log why it closed the connection",
    )


def test_a_client_with_a_wrong_password_is_refused(local_stack: LocalStack, sasl_kafka: SaslKafka) -> None:
    wrong = sasl_kafka.settings(local_stack, password="not-the-password")
    error, reported, took = _refused(wrong.confluent_config())
    assert error.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._AUTHENTICATION), error
    assert took < REFUSED_WITHIN_S + 5
    auth = [e for e in reported if e.code() == KafkaError._AUTHENTICATION]
    assert auth, f"no authentication error reported, only {reported}"
    assert "Invalid username or password" in auth[0].str()
    # Our producer path delivers nothing with it either, and says so instead of hanging.
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    report = produce(
        sasl_kafka.settings(local_stack, password="not-the-password", topic_prefix=prefix),
        [EventFactory(seed=3).chat(text="hello")],
        flush_timeout_s=5.0,
    )
    assert report.failed == 1 and not report.delivered, report.summary()


def test_a_client_that_does_not_trust_the_certificate_is_refused(
    local_stack: LocalStack, sasl_kafka: SaslKafka
) -> None:
    untrusting = sasl_kafka.settings(local_stack, protocol="SASL_SSL", kafka_ssl_cafile=None)
    error, reported, took = _refused(untrusting.confluent_config())
    assert error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._SSL), error
    assert took < REFUSED_WITHIN_S + 5
    assert any("certificate verify failed" in e.str() for e in reported), reported


@dataclass
class SaslRun:
    settings: Settings
    chat: ChatMessage
    replies: list[CsReply]
    worker_log: str


@pytest.fixture(scope="module", params=["SASL_PLAINTEXT", "SASL_SSL"])
def sasl_run(
    request: pytest.FixtureRequest, local_stack: LocalStack, sasl_kafka: SaslKafka
) -> Iterator[SaslRun]:
    """One worker with the right credentials, at DEBUG (the most it can log), scoring one chat
    message that the producer CLI sent; every client here takes its security from Settings."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings = sasl_kafka.settings(
        local_stack, protocol=request.param, topic_prefix=prefix, batch_within_s=0.02, log_level="debug"
    )
    topics = settings.topics
    # `python -m streams create-topics`' code path, then the stack's, which also waits for leaders
    assert set(ensure_topics(settings)) == set(topics.all())
    create_topics(
        settings.kafka_bootstrap,
        dict.fromkeys(topics.all(), settings.partitions),
        client_config=settings.confluent_config(),
    )
    worker = WorkerProcess(settings, STATE_DIR / "test-workers" / f"{prefix}sasl-worker.log")
    worker.start()

    def alive() -> None:
        if not worker.running():
            raise AssertionError(f"the worker exited during the test; its log:\n{worker.log()}")

    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "producers",
                "--count",
                "1",
                "--topics",
                "chat",
                "--rate",
                "0",
                "--no-progress",
            ],
            cwd=REPO,
            env={**os.environ, **settings_env(settings)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "delivered 1 records" in proc.stderr, proc.stderr
        wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=alive)
        with TopicReader(settings, [topics.chat, topics.cs_replies]) as reader:
            reader.read_to_end()
    except (AssertionError, StackError):
        print(f"--- worker log ({worker.log_path}) ---\n{worker.log()}")
        print(f"--- SASL broker log ---\n{sasl_kafka.server.log_path.read_text()[-4000:]}")
        raise
    finally:
        worker.stop()
    (sent,) = reader.by_topic(topics.chat)
    yield SaslRun(
        settings=settings,
        chat=decode(sent.value or b"", ChatMessage, max_bytes=settings.max_message_bytes),
        replies=[
            CsReply.model_validate(orjson.loads(r.value or b"")) for r in reader.by_topic(topics.cs_replies)
        ],
        worker_log=worker.log_path.read_text(errors="replace"),
    )


def test_the_worker_with_credentials_scores_a_chat_end_to_end(sasl_run: SaslRun) -> None:
    assert [r.in_reply_to for r in sasl_run.replies] == [sasl_run.chat.message_id]
    assert sasl_run.replies[0].action in ("reply", "handoff")
    assert f"Authenticated as {USER} via PLAIN" in sasl_run.worker_log  # aiokafka's own line
    # on the listener of its protocol: SASL_SSL's port refuses anything but TLS
    assert sasl_run.settings.kafka_bootstrap in sasl_run.worker_log


def test_the_password_is_never_logged_nor_shown(sasl_run: SaslRun, sasl_kafka: SaslKafka) -> None:
    password, settings = sasl_kafka.password, sasl_run.settings
    assert "Request to" in sasl_run.worker_log  # it really ran at DEBUG, requests included
    assert password not in sasl_run.worker_log
    broker_log = sasl_kafka.server.log_path.read_text(errors="replace")
    assert password not in broker_log and sasl_kafka.tls.password not in broker_log
    assert password not in repr(settings) and password not in str(settings)
    assert password not in settings.model_dump_json()
    # server.properties holds the broker's user list: readable by its owner only
    (props,) = Path(sasl_kafka.server.home).glob("server-*.properties")
    assert props.stat().st_mode & 0o077 == 0
