"""One compose test deployment per session: built and brought up once, torn down (`down -v`)
always. A failing test's report carries `docker compose logs` of every service.

Needs a Docker engine with the compose v2 plugin and the ms-base images, which
tools/compose-test.sh (`make compose-test`) sets up before it runs this suite, and the CPU model
repository from `make models`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Generator, Iterator

import pytest

from stack.local import CPU_REPOSITORY
from tests.compose.deployment import ComposeError, Deployment, results_dir

LOGS_KEY = pytest.StashKey[Deployment]()


def _preflight() -> None:
    if shutil.which("docker") is None:
        pytest.fail("no `docker` client on PATH: run this suite with `make compose-test`")
    for argv, what in (
        (["docker", "info", "--format", "{{.ServerVersion}}"], "no Docker engine answers"),
        (["docker", "compose", "version", "--short"], "no docker compose v2 plugin"),
        (["docker", "image", "inspect", "ms-base/python:3.11"], "no ms-base images"),
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.fail(f"{what}: run this suite with `make compose-test` ({done.stderr.strip()[:300]})")
    if not any(CPU_REPOSITORY.glob("*/config.pbtxt")):
        pytest.fail(f"no CPU model repository at {CPU_REPOSITORY}: run `make models` first")


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    _preflight()
    deploy = Deployment()
    timings: dict[str, float] = {}
    try:
        timings["build_s"] = round(deploy.build(), 1)
        timings["up_s"] = round(deploy.up(), 1)
    except ComposeError as exc:
        logs = deploy.logs()
        deploy.down()
        pytest.fail(f"{exc}\n--- docker compose logs ---\n{logs}")
    print(json.dumps({"compose_session": deploy.project, "ports": deploy.ports, **timings}))
    (results_dir() / "session.json").write_text(
        json.dumps({"ports": deploy.ports, **timings}, indent=2) + "\n"
    )
    request.session.stash[LOGS_KEY] = deploy
    try:
        yield deploy
    finally:
        deploy.down()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    deploy = item.session.stash.get(LOGS_KEY, None)
    if report.failed and deploy is not None:
        report.sections.append(("docker compose logs", deploy.logs()))
    return report
