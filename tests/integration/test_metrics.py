"""The worker's /health, /ready and /metrics on the real stack (Kafka, Triton, a worker process)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import orjson
import pytest

from stack.local import STATE_DIR, LocalStack, WorkerProcess
from tests.integration.conftest import Scorer

pytestmark = pytest.mark.integration

START_S = 120.0


def http_get(url: str) -> tuple[int, bytes]:
    """Status and body, a 503 included; raises OSError when nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(worker: WorkerProcess, timeout: float = START_S) -> dict:
    """Poll /ready until it answers 200; /health must answer all along once it answers at all."""
    deadline = time.monotonic() + timeout
    alive_seen = False
    while True:
        if not worker.running():
            raise AssertionError(f"the worker exited; its log:\n{worker.log()}")
        try:
            alive = http_get(f"{worker.metrics_url}/health")
            ready = http_get(f"{worker.metrics_url}/ready")
        except urllib.error.URLError:
            assert not alive_seen, "/health stopped answering while the worker started"
        else:
            alive_seen = True
            assert alive[0] == 200, alive
            if ready[0] == 200:
                return dict(orjson.loads(ready[1]))
            assert ready[0] == 503 and orjson.loads(ready[1])["missing"], ready
        if time.monotonic() > deadline:
            raise AssertionError(f"/ready did not answer 200 within {timeout:.0f}s; log:\n{worker.log()}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def scorer(local_stack: LocalStack) -> Iterator[Scorer]:
    """One worker for the module: the metrics tests read what one known event set left."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings = local_stack.settings(topic_prefix=prefix, batch_within_s=0.02)
    local_stack.create_topics(settings)
    worker = WorkerProcess(settings, STATE_DIR / "test-workers" / f"{prefix}worker.log")
    worker.start()
    try:
        yield Scorer(local_stack, settings, worker)
    finally:
        worker.stop()


def test_ready_once_it_owns_its_partitions_with_the_models(scorer: Scorer) -> None:
    state = wait_ready(scorer.worker)
    consumed = len(scorer.settings.topics.consumed) * scorer.settings.partitions
    assert state == {"ready": True, "missing": [], "assigned_partitions": consumed, "models_ready": True}
