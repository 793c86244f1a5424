"""The local Kafka broker is real: records go in, come back out, and survive a clean restart.

This runs the actual broker the rest of the stack uses (pinned jars from Maven Central, KRaft,
one node) in a throwaway state folder, so it checks the whole chain stack/kafka.py owns: jar
resolution, storage formatting, readiness, topic creation and a clean SIGTERM shutdown.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from stack.kafka import KafkaServer, create_topics

REPO_STATE = Path(__file__).resolve().parents[2] / ".stack"
RECORDS = 10

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("java") is None, reason="the Kafka broker needs java on PATH"),
]


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[KafkaServer]:
    """A fresh broker in tmp_path; the jars come from the repository's cache so no re-download."""
    server = KafkaServer(state_dir=tmp_path, jar_cache=REPO_STATE)
    try:
        yield server
    finally:
        server.stop()


def _produce(bootstrap: str, topic: str) -> None:
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), on_delivery=on_delivery)
    left = producer.flush(15.0)
    assert left == 0, f"{left} records still undelivered after flush"
    assert not failures, f"delivery failed: {failures}"


def _consume_all(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[str, str]:
    """Read the topic from the start with a new group until RECORDS arrive or the deadline passes."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    got: dict[str, str] = {}
    errors: list[str] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(got) < RECORDS and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                errors.append(str(msg.error()))
                continue
            key, value = msg.key(), msg.value()
            assert key is not None and value is not None, f"record without key or value at {msg.offset()}"
            got[key.decode()] = value.decode()
    finally:
        consumer.close()
    assert len(got) == RECORDS, (
        f"read {len(got)} of {RECORDS} records from {topic} within {timeout:.0f}s "
        f"(keys {sorted(got)}; consumer errors {errors})"
    )
    return got


def _pid_gone(pid: int) -> bool:
    """True when neither the JVM nor anything else in its process group is alive."""
    for signal_target in (lambda: os.kill(pid, 0), lambda: os.killpg(pid, 0)):
        try:
            signal_target()
        except ProcessLookupError:
            continue
        return False
    return True


def test_records_round_trip_and_survive_restart(kafka: KafkaServer) -> None:
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    expected = {f"k{i}": f"v{i}" for i in range(RECORDS)}

    kafka.start()
    bootstrap = kafka.bootstrap
    create_topics(bootstrap, {topic: 3})
    create_topics(bootstrap, {topic: 3})  # idempotent: the second call is a no-op
    _produce(bootstrap, topic)
    assert _consume_all(bootstrap, topic) == expected

    first_pid = kafka.pid
    kafka.stop()
    assert first_pid is not None and _pid_gone(first_pid), f"broker pid {first_pid} still alive after stop()"

    kafka.start()
    assert kafka.bootstrap == bootstrap, "a restarted server must keep its address"
    assert _consume_all(bootstrap, topic) == expected, "records were lost over a clean restart"

    pid = kafka.pid
    kafka.stop()
    assert pid is not None and _pid_gone(pid), f"broker pid {pid} still alive after stop()"
    assert not kafka.pid_path.exists(), "stop() must remove the pid file"
