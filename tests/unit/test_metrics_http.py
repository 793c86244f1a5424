"""/health, /ready and /metrics over a real socket (streams.http), and what /ready answers when."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.app import create_app
from streams.http import EndpointSensor, EndpointServer, Readiness
from streams.metrics import WorkerMetrics
from streams.settings import Settings


@dataclass
class Worker:
    """What /ready looks at, as test doubles."""

    partitions: int = 0
    fatal: BaseException | None = None
    readiness: Readiness = field(init=False)

    def __post_init__(self) -> None:
        self.readiness = Readiness(owned=lambda: self.partitions, stopping=lambda: self.fatal)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Worker, str]]:
    worker = Worker()
    metrics = WorkerMetrics()
    metrics.track(lambda: worker.readiness.ready, lambda: 0)
    server = EndpointServer("127.0.0.1", 0, worker.readiness, metrics.registry)
    await server.start()
    assert server.port > 0  # port 0: the one the OS picked
    yield worker, f"http://127.0.0.1:{server.port}"
    await server.stop()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


def ready_gauge(text: str) -> float:
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "marketing_scorer_ready"]
    return float(family.samples[0].value)


async def test_alive_from_the_start_ready_only_once_assigned_with_models(served: tuple[Worker, str]) -> None:
    worker, url = served
    assert (await get(f"{url}/health"))[0] == 200
    status, kind, body = await get(f"{url}/ready")
    assert (status, kind) == (503, "application/json; charset=utf-8")
    assert '"ready": false' in body and "first rebalance" in body and "models" in body
    assert ready_gauge((await get(f"{url}/metrics"))[2]) == 0

    worker.readiness.rebalance_started()
    worker.readiness.rebalance_ended()
    worker.partitions = 8
    assert (await get(f"{url}/ready"))[0] == 503  # the models are still missing
    worker.readiness.models_ready = True
    status, _, body = await get(f"{url}/ready")
    assert status == 200 and '"assigned_partitions": 8' in body
    status, kind, text = await get(f"{url}/metrics")
    assert status == 200 and kind.startswith("text/plain; version=")
    assert ready_gauge(text) == 1


def test_not_ready_during_a_rebalance_nor_while_stopping() -> None:
    worker = Worker(partitions=4)
    readiness = worker.readiness
    readiness.models_ready = True
    readiness.rebalance_ended()
    assert readiness.ready
    readiness.rebalance_started()
    assert readiness.state()["missing"] == ["assignment: a rebalance is under way"]
    assert readiness.state()["assigned_partitions"] is None
    readiness.rebalance_ended()
    worker.fatal = TimeoutError("Triton down")
    assert readiness.state()["missing"] == ["stopping: TimeoutError"]


def test_an_empty_assignment_after_a_completed_rebalance_is_ready() -> None:
    """More workers than partitions: the assignor gave this one nothing, and it is healthy."""
    readiness = Worker(partitions=0).readiness
    readiness.models_ready = True
    readiness.rebalance_started()
    readiness.rebalance_ended()
    assert readiness.state() == {
        "ready": True,
        "missing": [],
        "assigned_partitions": 0,
        "models_ready": True,
    }


async def test_a_port_already_taken_fails_the_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EndpointServer("127.0.0.1", port, Worker().readiness, WorkerMetrics().registry)
        with pytest.raises(OSError):
            await server.start()
        await server.stop()


def test_the_worker_app_serves_the_endpoints_from_its_settings(tmp_path: Path) -> None:
    app = create_app(Settings(datadir=tmp_path, metrics_host="127.0.0.2", metrics_port=0))
    [sensor] = [s for s in app.sensors if isinstance(s, EndpointSensor)]
    assert (sensor.server.host, sensor.server.port) == ("127.0.0.2", 0)
