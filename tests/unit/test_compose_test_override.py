"""compose.test.yaml swaps in locally built images, host networking and the CPU Triton, and
nothing else: the services, environment, healthchecks, restart policies and dependencies that
the compose suite (tests/compose) runs are the production file's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_compose import COMPOSE_FILE, REPO, TEST_OVERRIDE, load_compose

PORT_VARIABLES = (
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "TRITON_HTTP_PORT",
    "TRITON_GRPC_PORT",
    "TRITON_METRICS_PORT",
    "DASHBOARD_PORT",
)
# What host networking changes: the addresses that services listen on and reach each other at.
ADDRESS_ENVIRONMENT = {
    "MS_KAFKA_BOOTSTRAP",
    "MS_TRITON_GRPC_URL",
    "KAFKA_LISTENERS",
    "KAFKA_ADVERTISED_LISTENERS",
    "KAFKA_CONTROLLER_QUORUM_VOTERS",
}
BASE_IMAGE_ARGS = {"BASE", "PYTHON_IMAGE", "NODE_IMAGE"}
UPSTREAM_DEFAULTS = {"PYTHON_IMAGE": "python:3.11-slim", "NODE_IMAGE": "node:20-slim"}


@pytest.fixture(scope="module")
def projects() -> tuple[dict[str, Any], dict[str, Any]]:
    with pytest.MonkeyPatch.context() as env:  # the defaults, as a newcomer's shell has them
        for name in PORT_VARIABLES:
            env.delenv(name, raising=False)
        return load_compose(COMPOSE_FILE), load_compose(COMPOSE_FILE, TEST_OVERRIDE)


def pairs(
    projects: tuple[dict[str, Any], dict[str, Any]],
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    production, test = projects
    return [(name, service, test["services"][name]) for name, service in production["services"].items()]


def test_same_services_restart_policies_and_dependencies(
    projects: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    production, test = projects
    assert set(test["services"]) == set(production["services"])
    assert test["volumes"].keys() == production["volumes"].keys()
    for name, prod, tested in pairs(projects):
        for key in ("restart", "depends_on", "init", "shm_size", "user", "entrypoint", "stop_grace_period"):
            assert tested.get(key) == prod.get(key), (name, key)


def test_only_the_swapped_keys_differ(projects: tuple[dict[str, Any], dict[str, Any]]) -> None:
    swapped = {
        "image",
        "build",
        "network_mode",
        "pull_policy",
        "environment",
        "healthcheck",
        "command",
        "volumes",
        "deploy",
        "ports",
        "networks",  # compose puts every bridged service on `default`; host networking has none
    }
    for name, prod, tested in pairs(projects):
        differ = {k for k in prod.keys() | tested.keys() if prod.get(k) != tested.get(k)}
        assert differ <= swapped, (name, differ - swapped)


def test_host_networking_only_and_every_listener_on_loopback(
    projects: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, test = projects
    assert "networks" not in test or set(test["networks"]) <= {"default"}
    for name, service in test["services"].items():
        assert service["network_mode"] == "host", name
        assert "networks" not in service and "ports" not in service, name
        assert service["pull_policy"] == "never", name  # no registry is reachable
        for variable in ADDRESS_ENVIRONMENT & set(service.get("environment") or {}):
            hosts = re.findall(r"(?:^|//|@|,)([^/:@,]*):\d+", service["environment"][variable])
            assert hosts and set(hosts) == {"127.0.0.1"}, (name, variable, hosts)
    triton = test["services"]["triton"]["command"]
    assert {f for f in triton if f.endswith("-address=127.0.0.1")} == {
        f"--{kind}-address=127.0.0.1" for kind in ("http", "grpc", "metrics")
    }
    dashboard = test["services"]["dashboard"]["command"]
    assert dashboard[dashboard.index("--host") + 1] == "127.0.0.1"
    assert test["services"]["gateway"]["environment"]["MS_GATEWAY_HOST"] == "127.0.0.1"


def test_environment_differs_only_in_addresses(projects: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for name, prod, tested in pairs(projects):
        env, test_env = prod.get("environment") or {}, tested.get("environment") or {}
        differ = {k for k in env.keys() | test_env.keys() if env.get(k) != test_env.get(k)}
        allowed = ADDRESS_ENVIRONMENT | ({"MS_METRICS_PORT"} if name == "worker" else set())
        allowed |= {"MS_GATEWAY_HOST"} if name == "gateway" else set()  # its listen address
        assert differ <= allowed, (name, differ - allowed)
    # replicas share the host's network: each binds a free port, which its healthcheck finds
    assert projects[1]["services"]["worker"]["environment"]["MS_METRICS_PORT"] == "0"


def test_healthchecks_are_the_production_ones(projects: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for name, prod, tested in pairs(projects):
        if "healthcheck" not in prod:
            assert "healthcheck" not in tested, name
            continue
        check, test_check = prod["healthcheck"], tested["healthcheck"]
        assert {k: v for k, v in check.items() if k != "test"} == {
            k: v for k, v in test_check.items() if k != "test"
        }, name
        # the same command, asked of 127.0.0.1 (host networking) instead of localhost
        assert [part.replace("localhost:", "127.0.0.1:") for part in check["test"]] == test_check["test"], (
            name
        )
    worker = projects[0]["services"]["worker"]["healthcheck"]
    assert worker["test"] == ["CMD", "worker-ready"], "the worker's readiness, not `true`"


def test_commands_differ_only_in_listen_addresses(projects: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for name, prod, tested in pairs(projects):
        command, test_command = prod.get("command"), tested.get("command")
        if name == "triton":
            assert test_command[: len(command)] == command
            extra = test_command[len(command) :]
            assert all(re.fullmatch(r"--(http|grpc|metrics)-(address|port)=[\d.]+", f) for f in extra), extra
        elif name == "dashboard":
            i = command.index("--host")
            assert test_command[:i] + test_command[i + 2 :] == command[:i] + command[i + 2 :]
        else:
            assert test_command == command, name


def test_triton_serves_the_cpu_profile_without_a_gpu(projects: tuple[dict[str, Any], dict[str, Any]]) -> None:
    triton = projects[1]["services"]["triton"]
    assert "deploy" not in triton
    mounts = {
        v["target"]: (Path(v["source"]).relative_to(REPO), v.get("read_only")) for v in triton["volumes"]
    }
    assert mounts == {
        "/models": (Path("build/triton-cpu"), True),
        # the generated configs name their ONNX files ../../../../triton_models/<model>/{version}/model.onnx
        "/triton_models": (Path("triton_models"), True),
    }
    config = (REPO / "build" / "triton-cpu" / "text_encoder" / "config.pbtxt").resolve()
    if config.is_file():  # after `make models`: the relative path lands on the mounted folder
        onnx = re.search(r'"(\.\./[^"]+\.onnx)"', config.read_text())
        assert onnx is not None
        in_container = (Path("/models/text_encoder/1") / onnx.group(1).replace("{version}", "1")).resolve()
        # model.onnx, or model.int8.onnx where this machine measured INT8 as meeting its targets
        assert in_container.parent == Path("/triton_models/text_encoder/1")
        assert in_container.name in ("model.onnx", "model.int8.onnx")


def test_every_image_is_built_here_on_base_images_made_here(
    projects: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    production, test = projects
    built = {s["image"]: s["build"] for s in test["services"].values() if "build" in s}
    for name, service in test["services"].items():
        assert service["image"] in built, (name, service["image"], "would be pulled")
        assert not service["image"].startswith(("apache/", "nvcr.io/", "marketing-scorer:")), name
        prod_build = production["services"][name].get("build")
        if prod_build:  # the production build itself, on other bases
            build = service["build"]
            assert (build["context"], build["dockerfile"]) == (
                prod_build["context"],
                prod_build["dockerfile"],
            )
    for build in built.values():
        assert build["network"] == "host"
        assert set(build["args"]) <= BASE_IMAGE_ARGS and all(
            v.startswith("ms-base/") for v in build["args"].values()
        )


DOCKERFILES = sorted(
    [
        REPO / "docker" / "Dockerfile",
        *(REPO / "docker").glob("*/Dockerfile"),
        *(REPO / "docker").glob("base/*.Dockerfile"),
    ]
)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_dockerfile_takes_its_base_image_as_a_build_argument(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    stages: set[str] = set()
    for image, stage in re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M):
        variable = re.fullmatch(r"\$\{(\w+)\}", image)
        assert image in stages or (variable and variable.group(1) in args), (dockerfile, image)
        stages.add(stage)
    for name, default in args.items():
        assert name in BASE_IMAGE_ARGS, (dockerfile, name)
        assert default == UPSTREAM_DEFAULTS.get(name, "debian:bookworm-slim"), (dockerfile, name, default)
    assert "# syntax=" not in text, "the frontend image cannot be pulled here: use the engine's own"
