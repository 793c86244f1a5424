"""The Prometheus configuration and alert rules (observability/prometheus), checked and unit-tested
with promtool, from Debian's `prometheus` package (`make prometheus` installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stack.local import PROMETHEUS_DIR, prometheus_config

ALERTS = (
    "ConsumerLagGrowing",
    "DeadLetterRateHigh",
    "NoBidRateHigh",
    "TritonRequestsFailing",
    "WorkerNotReady",
)


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not on PATH: `make prometheus` installs Debian's prometheus package")
    proc = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_rules_are_valid() -> None:
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")


def test_the_rules_unit_tests_pass() -> None:
    """alerts.test.yml: each alert fires on the series that should raise it, and only on those."""
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


def test_every_alert_the_issue_asks_for_is_defined_and_tested() -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    defined = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())
    tested = {
        case["alertname"]
        for t in tests["tests"]
        for case in t["alert_rule_test"]
        if case.get("exp_alerts")  # a test that expects the alert to fire
    }
    assert set(ALERTS) <= defined
    assert defined == tested, f"alerts never seen firing in alerts.test.yml: {defined - tested}"


def test_compose_and_local_configs_are_valid(tmp_path: Path) -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    local = tmp_path / "prometheus.yml"
    config = prometheus_config(["127.0.0.1:9400", "127.0.0.1:9401"], "127.0.0.1:8002", port=9090)
    local.write_text(json.dumps(config))
    assert "SUCCESS" in promtool("check", "config", str(local), cwd=tmp_path)
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}  # type: ignore[attr-defined]
    assert jobs == {
        "marketing-scorer": ["127.0.0.1:9400", "127.0.0.1:9401"],
        "triton": ["127.0.0.1:8002"],
        "prometheus": ["127.0.0.1:9090"],
    }
