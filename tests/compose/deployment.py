"""The compose test deployment, driven from the host: `docker compose -f docker-compose.yml -f
compose.test.yaml` under a project name of its own, on free loopback ports.

Every call is bounded (a subprocess timeout, compose's own --wait-timeout) and raises with the
command's output when it fails. Containers are found through compose (`ps -q SERVICE`) and
looked at with `docker inspect`: restart counts, main PIDs, health.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack.process import free_port
from streams.settings import Settings
from tests.unit.test_compose import COMPOSE_FILE, REPO, TEST_OVERRIDE

# compose.test.yaml's port variables and their defaults; a port that is taken is swapped for a
# free one, so the suite runs beside a local stack (make demo, the integration tests).
DEFAULT_PORTS = {
    "KAFKA_PORT": 9092,
    "KAFKA_CONTROLLER_PORT": 9093,
    "TRITON_HTTP_PORT": 8000,
    "TRITON_GRPC_PORT": 8001,
    "TRITON_METRICS_PORT": 8002,
    "DASHBOARD_PORT": 8765,
}
PROJECT_PREFIX = "ms-compose-test-"  # tools/compose-test.sh removes what a killed run left
SERVICES = (
    "kafka",
    "topics",
    "triton",
    "worker",
    "gateway",
    "dashboard",
)  # `up`; the producer is run by tests


class ComposeError(AssertionError):
    pass


def free_ports() -> dict[str, int]:
    chosen: dict[str, int] = {}
    for name, preferred in DEFAULT_PORTS.items():
        port = free_port(preferred)
        while port in chosen.values():
            port = free_port(0)
        chosen[name] = port
    return chosen


@dataclass
class Deployment:
    project: str = field(default_factory=lambda: f"{PROJECT_PREFIX}{uuid.uuid4().hex[:8]}")
    ports: dict[str, int] = field(default_factory=free_ports)

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **{name: str(port) for name, port in self.ports.items()}}
        env.pop("COMPOSE_FILE", None)
        env.pop("COMPOSE_PROJECT_NAME", None)
        return env

    def compose(
        self, *args: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = ["docker", "compose", "--ansi", "never", "-p", self.project]
        argv += ["-f", str(COMPOSE_FILE), "-f", str(TEST_OVERRIDE), *args]
        try:
            done = subprocess.run(
                argv, cwd=REPO, env=self.environment(), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise ComposeError(f"`{' '.join(argv[6:])}` did not finish in {timeout:.0f}s") from exc
        if check and done.returncode != 0:
            raise ComposeError(
                f"`docker compose {' '.join(args)}` failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
            )
        return done

    def build(self) -> float:
        started = time.monotonic()
        self.compose("build", "--progress", "plain", timeout=1800)
        return time.monotonic() - started

    def up(self, *services: str, scale: int | None = None, no_deps: bool = False, wait_s: int = 300) -> float:
        """`up -d --wait`: returns once every service started is running and healthy (one-shot
        services: exited 0), or raises after `wait_s`. `scale` is the worker's replica count."""
        started = time.monotonic()
        args = ["up", "-d", "--wait", "--wait-timeout", str(wait_s)]
        if scale is not None:
            args += ["--scale", f"worker={scale}"]
        if no_deps:
            args.append("--no-deps")
        self.compose(*args, *(services or SERVICES), timeout=wait_s + 60)
        return time.monotonic() - started

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=180)

    def logs(self, tail: int = 200) -> str:
        done = self.compose(
            "logs", "--no-color", "--timestamps", "--tail", str(tail), check=False, timeout=60
        )
        return done.stdout + done.stderr

    def containers(self, service: str) -> list[str]:
        """The ids of the service's containers, running or not."""
        return self.compose("ps", "-a", "-q", service).stdout.split()

    def inspect(self, container: str) -> dict[str, Any]:
        done = subprocess.run(
            ["docker", "inspect", container], capture_output=True, text=True, timeout=30, check=True
        )
        info: dict[str, Any] = json.loads(done.stdout)[0]
        return info

    def restarts(self, service: str) -> int:
        """Restarts by the restart policy, summed over the service's containers."""
        return sum(int(self.inspect(c)["RestartCount"]) for c in self.containers(service))

    def crash(self, service: str) -> None:
        """SIGKILL the service's main process from outside, as the kernel's OOM killer or a crash
        would end it: the engine sees the process die and applies the restart policy. (`docker
        kill` is an operator's stop: the engine never restarts a container it killed itself.)"""
        [container] = self.containers(service)
        os.kill(int(self.inspect(container)["State"]["Pid"]), signal.SIGKILL)

    def wait_running(self, service: str, *, restarts_above: int = -1, timeout: float = 120.0) -> None:
        """Until every container of the service runs, after more than `restarts_above` restarts."""
        deadline = time.monotonic() + timeout
        while True:
            states = [self.inspect(c)["State"] for c in self.containers(service)]
            if states and all(s["Running"] and not s["Restarting"] for s in states):
                if self.restarts(service) > restarts_above:
                    return
            if time.monotonic() > deadline:
                raise ComposeError(f"{service} is not running again within {timeout:.0f}s: {states}")
            time.sleep(0.5)

    def wait_stopped(self, service: str, timeout: float = 30.0) -> dict[str, Any]:
        """Until the service's one container has stopped; its state then."""
        deadline = time.monotonic() + timeout
        while True:
            [state] = [self.inspect(c)["State"] for c in self.containers(service)]
            if not state["Running"]:
                return dict(state)
            if time.monotonic() > deadline:
                raise ComposeError(f"{service} still runs {timeout:.0f}s after it was stopped: {state}")
            time.sleep(0.2)

    def wait_healthy(self, service: str, timeout: float = 180.0) -> float:
        started = time.monotonic()
        while True:
            health = [
                self.inspect(c)["State"].get("Health", {}).get("Status") for c in self.containers(service)
            ]
            if health and all(h == "healthy" for h in health):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise ComposeError(f"{service} is not healthy within {timeout:.0f}s: {health}")
            time.sleep(0.5)

    def settings(self) -> Settings:
        """Settings of a host-side client of the deployment (the production topic names and app id)."""
        return Settings(
            kafka_bootstrap=f"127.0.0.1:{self.ports['KAFKA_PORT']}",
            triton_grpc_url=f"127.0.0.1:{self.ports['TRITON_GRPC_PORT']}",
            topic_prefix="",
            app_id="marketing-scorer",
            datadir=REPO / ".stack" / "compose-test",
        )


def results_dir() -> Path:
    path = REPO / "build" / "compose"
    path.mkdir(parents=True, exist_ok=True)
    return path
