"""Validate docker-compose.yml the way `docker compose config` does.

Unit tests run before any Docker engine or compose plugin is set up (the compose suite,
tests/compose, brings those), so tools/composecheck wraps compose-go (the library behind
`docker compose config`): schema validation and consistency checks on, OS env plus an
optional .env for interpolation, several files merged in order as `-f A -f B` does.

`load_compose(*paths)` returns the resolved project as a dict; the `compose_project`
fixture is that for the repo's docker-compose.yml. From another module in this folder:
`from tests.unit.test_compose import load_compose`.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
TEST_OVERRIDE = REPO / "compose.test.yaml"  # the test deployment, applied on top of COMPOSE_FILE


@functools.cache
def build_composecheck() -> Path:
    """Build tools/composecheck once per process; the Go caches in ~/go make rebuilds fast."""
    if shutil.which("go") is None:
        pytest.fail("`go` is not on PATH: it is needed to build tools/composecheck")
    out = Path(tempfile.mkdtemp(prefix="composecheck-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    binary = out / "composecheck"
    proc = subprocess.run(
        # tools/composecheck is its own module (the repo root has no go.mod), so build from there
        ["go", "build", "-buildvcs=false", "-o", str(binary), "."],
        cwd=REPO / "tools" / "composecheck",
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"building tools/composecheck failed:\n{proc.stderr}")
    return binary


def run_composecheck(*args: Path | str) -> subprocess.CompletedProcess[str]:
    """composecheck FILE [FILE...] [--print]"""
    return subprocess.run(
        [str(build_composecheck()), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def load_compose(*paths: Path) -> dict[str, Any]:
    """The project as `docker compose -f A [-f B ...] config` resolves it (fails the test if invalid)."""
    proc = run_composecheck(*paths, "--print")
    if proc.returncode != 0:
        pytest.fail(f"{' + '.join(map(str, paths))} is not a valid compose project:\n{proc.stderr}")
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="session")
def compose_project() -> dict[str, Any]:
    if not COMPOSE_FILE.exists():
        pytest.fail(f"{COMPOSE_FILE} does not exist: the local stack needs a compose file")
    return load_compose(COMPOSE_FILE)


def test_repo_compose_file_validates() -> None:
    assert COMPOSE_FILE.exists(), f"{COMPOSE_FILE} does not exist: the local stack needs a compose file"
    proc = run_composecheck(COMPOSE_FILE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: ")


def test_compose_project_fixture(compose_project: dict[str, Any]) -> None:
    assert compose_project["services"], "docker-compose.yml defines no services"


def test_test_override_validates_on_top_of_the_production_file() -> None:
    proc = run_composecheck(COMPOSE_FILE, TEST_OVERRIDE)
    assert proc.returncode == 0, proc.stderr


SAMPLE = """\
services:
  triton:
    image: ${COMPOSECHECK_TEST_IMAGE:-nvcr.io/nvidia/tritonserver:24.10-py3}
    volumes:
      - models:/models
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              count: 1
              capabilities: [gpu]
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:8000/v2/health/ready"]
      interval: 5s
      retries: 10
  scorer:
    image: scorer:latest
    depends_on:
      triton:
        condition: service_healthy
    healthcheck:
      test: ["CMD-SHELL", "true"]
volumes:
  models: {}
"""


def test_sample_gpu_stack_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPOSECHECK_TEST_IMAGE", raising=False)
    path = tmp_path / "compose.yml"  # no .env beside it: must not be required
    path.write_text(SAMPLE)

    proc = run_composecheck(path)
    assert (proc.returncode, proc.stdout) == (0, "ok: 2 services\n"), proc.stderr

    project = load_compose(path)
    triton, scorer = project["services"]["triton"], project["services"]["scorer"]
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"  # ${VAR:-default} resolved
    assert triton["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    volume = triton["volumes"][0]
    assert (volume["type"], volume["source"], volume["target"]) == ("volume", "models", "/models")
    assert triton["healthcheck"]["retries"] == 10
    assert scorer["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "models" in project["volumes"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("services:\n  a:\n    image: x\n    ports: notalist\n", "services.a.ports must be a array"),
        ("services:\n  a:\n    image: x\nbogus: 1\n", "additional properties 'bogus' not allowed"),
        ("services:\n  a:\n    image: x\n    depends_on: [nope]\n", 'depends on undefined service "nope"'),
    ],
    ids=["ports-not-a-list", "unknown-top-level-key", "depends-on-missing-service"],
)
def test_broken_compose_file_fails(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "compose.yml"
    path.write_text(body)
    proc = run_composecheck(path)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr
