"""Session-scoped real servers (Apache Kafka + Triton), a unique topic prefix and a real worker
process per test. A failing test prints the tails of every server's and worker's log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stack.local import STATE_DIR, LocalStack, WorkerProcess
from streams.settings import Settings


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    stack = LocalStack()
    try:
        stack.up()
    except Exception:
        print(stack.logs())
        raise
    yield stack
    stack.down()


@dataclass
class Scorer:
    """One test's view of the stack: its own topics, its own worker."""

    stack: LocalStack
    settings: Settings
    worker: WorkerProcess

    def alive(self) -> None:
        if not self.worker.running():
            raise AssertionError(f"the worker exited during the test; its log:\n{self.worker.log()}")


@pytest.fixture
def scorer(local_stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[Scorer]:
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings = local_stack.settings(topic_prefix=prefix, batch_within_s=0.02)
    local_stack.create_topics(settings)
    worker = WorkerProcess(settings, STATE_DIR / "test-workers" / f"{prefix}worker.log")
    worker.start()
    yield Scorer(local_stack, settings, worker)
    worker.stop()
    if _failed(request):
        print(f"--- worker log ({worker.log_path}) ---\n{worker.log()}\n{local_stack.logs()}")
