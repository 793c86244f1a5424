"""The worker's HTTP endpoints: `/health` (alive), `/ready` (assigned, models ready) and `/metrics`
(Prometheus text), on `metrics_host:metrics_port` (loopback, 9400 by default).

They are served by aiohttp inside the worker's own event loop, not by prometheus_client's
threaded server: `/health` must answer only while that loop does (a loop blocked by a bug fails
the probe, as it should), and `/ready` reads the app's state, which belongs to the loop. Faust's
own web server stays off (`web_enabled=False`): it would start only after table recovery, and it
brings routes of its own.

The server runs as a Faust sensor, the hook Faust gives for monitoring: sensors start before the
producer and the consumer and stop after them, so `/health` answers while the worker joins its
group and while it shuts down, and the sensor hears of every rebalance.

Ready means both:
- **assigned**: the last rebalance has completed (tables recovered, streams seeked and resumed:
  Faust's `on_rebalance_end`) and no other is under way. An empty assignment after a completed
  rebalance is ready too: the group's assignor had no partition for this worker (more workers
  than partitions), and it takes some over as soon as another worker leaves.
- **models ready**: Triton said both models were ready (`TritonModels.wait_ready`, which the
  worker runs at start). A Triton that goes away later shows in the Triton metrics and alerts;
  past the retry budget the worker stops itself.
And the worker is not stopping itself (`streams.shutdown`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from faust import Sensor
from faust.types import AppT
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("streams.http")


@dataclass
class Readiness:
    """What `/ready` answers. `owned` counts the input partitions assigned now; `stopping` says
    why the worker is stopping itself, if it is."""

    owned: Callable[[], int]
    stopping: Callable[[], BaseException | None]
    joined: bool = False  # a rebalance has completed since the start
    rebalancing: bool = False
    models_ready: bool = False

    def rebalance_started(self) -> None:
        self.rebalancing = True

    def rebalance_ended(self) -> None:
        self.rebalancing = False
        self.joined = True

    def state(self) -> dict[str, Any]:
        """`ready`, and what is missing when it is not."""
        missing = []
        if not self.joined:
            missing.append("assignment: the worker has not completed its first rebalance")
        elif self.rebalancing:
            missing.append("assignment: a rebalance is under way")
        if not self.models_ready:
            missing.append("models: Triton has not reported the models ready")
        why = self.stopping()
        if why is not None:
            missing.append(f"stopping: {type(why).__name__}")
        assigned = self.owned() if self.joined and not self.rebalancing else None
        return {
            "ready": not missing,
            "missing": missing,
            "assigned_partitions": assigned,
            "models_ready": self.models_ready,
        }

    @property
    def ready(self) -> bool:
        return bool(self.state()["ready"])


def endpoints(readiness: Readiness, registry: CollectorRegistry) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def ready(_: web.Request) -> web.Response:
        state = readiness.state()
        return web.json_response(state, status=200 if state["ready"] else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    return app


class EndpointServer:
    """The aiohttp server of `endpoints`, bound to `host:port` (0: a free port, logged)."""

    def __init__(self, host: str, port: int, readiness: Readiness, registry: CollectorRegistry) -> None:
        self.host = host
        self.port = port
        self._runner = web.AppRunner(endpoints(readiness, registry), access_log=None)

    async def start(self) -> None:
        """Bind and serve; a port already taken fails the worker's start, loudly."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])
        log.info("metrics and health on http://%s:%d (/metrics, /health, /ready)", self.host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()


class EndpointSensor(Sensor):
    """Runs the endpoint server for as long as the app runs, and tells `readiness` of rebalances."""

    def __init__(self, server: EndpointServer, readiness: Readiness, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server
        self.readiness = readiness

    async def on_start(self) -> None:
        await self.server.start()

    async def on_stop(self) -> None:
        await self.server.stop()

    def on_rebalance_start(self, app: AppT) -> dict:
        self.readiness.rebalance_started()
        return super().on_rebalance_start(app)

    def on_rebalance_end(self, app: AppT, state: dict) -> None:
        self.readiness.rebalance_ended()
