"""The producer CLI against the real broker: counts, delivery report, exit code."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from stack.local import REPO, LocalStack, settings_env
from stack.observe import TopicReader
from streams.app import key_partition

pytestmark = pytest.mark.integration


def test_cli_produces_the_requested_events_and_reports_deliveries(local_stack: LocalStack) -> None:
    settings = local_stack.settings(topic_prefix=f"p{uuid.uuid4().hex[:8]}-")
    local_stack.create_topics(settings)
    env = {**os.environ, **settings_env(settings)}
    proc = subprocess.run(
        [sys.executable, "-m", "producers", "--count", "40", "--rate", "0", "--bad", "--no-progress"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    bad = 8 + 7 + 8 + 7  # one of each bad kind per topic (chat and social also get an oversized text)
    assert f"delivered {40 + bad} records" in proc.stderr
    with TopicReader(settings, settings.topics.inputs) as reader:
        reader.read_to_end()
    assert len(reader.records) == 40 + bad
    assert all(r.key for r in reader.records)
    # librdkafka's murmur2_random places keys where the worker's tables expect them
    assert all(r.partition == key_partition(r.key or b"", settings.partitions) for r in reader.records)


def test_cli_rejects_unknown_topics() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "producers", "--topics", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown topics" in proc.stderr
