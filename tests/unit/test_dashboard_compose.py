"""The compose `dashboard` service: the worker image, real settings, a token, loopback on the host."""

from __future__ import annotations

from typing import Any

import pytest

from streams.settings import Settings
from tests.unit.test_compose import COMPOSE_FILE, REPO, load_compose


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    service: dict[str, Any] = load_compose(COMPOSE_FILE)["services"]["dashboard"]
    return service


def test_dashboard_runs_from_the_worker_image_with_real_settings(dashboard: dict[str, Any]) -> None:
    assert dashboard["image"] == "marketing-scorer:latest"
    assert dashboard["command"][:3] == ["python", "-m", "dashboard"]
    env = dashboard["environment"]
    assert set(env) <= {f"MS_{name.upper()}" for name in Settings.model_fields}
    assert env["MS_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "MS_DASHBOARD_TOKEN" in env  # listening on 0.0.0.0, it starts only with one


def test_dashboard_is_published_on_host_loopback_only(dashboard: dict[str, Any]) -> None:
    host_ips = {p.get("host_ip") for p in dashboard["ports"]}
    assert host_ips == {"127.0.0.1"}, dashboard["ports"]


def test_the_image_carries_the_page_and_its_chart_library() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "COPY dashboard/package.json dashboard/package-lock.json ./" in dockerfile
    assert "COPY dashboard/static ./dashboard/static" in dockerfile
    assert "COPY --from=dashboard-assets /build/node_modules ./dashboard/node_modules" in dockerfile
