"""The whole embedded stack: Kafka, Triton, and worker processes, started and stopped together.

Used by `python -m stack` (the demo) and by the integration tests' session fixtures, so the
demo and the tests exercise the same start-up path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import SecretStr

from stack.errors import StackError
from stack.kafka import KafkaServer, create_topics
from stack.process import ManagedProcess, free_port, log_tail, port_open, wait_until
from stack.triton import TritonServer
from streams.settings import Settings

log = logging.getLogger("stack.local")

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = REPO / ".stack"
CPU_REPOSITORY = REPO / "build" / "triton-cpu"
DASHBOARD_PORT = 8765  # the dashboard's port when it is free, else one the OS picks
PROMETHEUS_DIR = REPO / "observability" / "prometheus"  # compose's config, rules and rule tests
PROMETHEUS_PORT = 9090  # Prometheus's port when it is free, else one the OS picks

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def answers_ok(url: str) -> bool:
    """Whether `url` answers 200 now (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class LocalStack:
    """Kafka + Triton on 127.0.0.1. `up()` starts both (in parallel: the JVM and Triton's model
    loading overlap), `down()` stops both; each is also stopped if the other fails to start."""

    state_dir: Path = STATE_DIR
    repository: Path = CPU_REPOSITORY
    kafka_config: Mapping[str, str] = field(default_factory=dict)
    kafka: KafkaServer = field(init=False)
    triton: TritonServer = field(init=False)

    def __post_init__(self) -> None:
        self.kafka = KafkaServer(state_dir=self.state_dir, extra_config=dict(self.kafka_config))
        self.triton = TritonServer(repository=self.repository, state_dir=self.state_dir)

    def up(self, progress: Progress = _quiet) -> None:
        if not (self.repository.is_dir() and any(self.repository.iterdir())):
            raise FileNotFoundError(
                f"no Triton model repository at {self.repository}: build it with `make models`"
            )
        errors: list[BaseException] = []

        def start_triton() -> None:
            try:
                self.triton.start()
            except BaseException as exc:  # reported below, in the main thread
                errors.append(exc)

        progress("starting Kafka (KRaft) and Triton")
        thread = threading.Thread(target=start_triton, name="triton-start")
        thread.start()
        try:
            self.kafka.start()
            progress(f"Kafka ready on {self.kafka.bootstrap}")
        except BaseException:
            thread.join()
            self.down()
            raise
        thread.join()
        if errors:
            self.down()
            raise errors[0]
        progress(f"Triton ready on {self.triton.grpc_url} with models {', '.join(self.triton.model_names())}")

    def down(self) -> None:
        for server in (self.triton, self.kafka):
            try:
                server.stop()
            except Exception:
                log.exception("stopping %s failed", type(server).__name__)

    def settings(self, **overrides: object) -> Settings:
        """Settings that point at this stack (overrides win)."""
        values: dict[str, object] = {
            "kafka_bootstrap": self.kafka.bootstrap,
            "triton_grpc_url": self.triton.grpc_url,
            "datadir": self.state_dir / "faust",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def create_topics(self, settings: Settings) -> None:
        """The scorer's topics, created with the settings' Kafka security (SASL, TLS) too."""
        create_topics(
            self.kafka.bootstrap,
            dict.fromkeys(settings.topics.all(), settings.partitions),
            client_config=settings.confluent_config(),
        )

    def logs(self) -> str:
        """Tails of both servers' logs, for a failing test or a failed start."""
        return "\n".join(
            f"--- {name} log ({path}) ---\n{log_tail(path)}"
            for name, path in (("kafka", self.kafka.log_path), ("triton", self.triton.log_path))
        )


def settings_env(settings: Settings) -> dict[str, str]:
    """The MS_* environment that reproduces `settings` in a child process."""
    env: dict[str, str] = {}
    # a SecretStr dumps as its mask: the secrets are added as their values below
    secrets = {name for name, value in settings if isinstance(value, SecretStr)}
    for name, value in settings.model_dump(exclude=secrets).items():
        if value is None:
            continue
        if isinstance(value, tuple | list):
            text = json.dumps(list(value))
        elif isinstance(value, dict):  # notice_keys: key id -> SecretStr, passed as JSON with its values
            text = json.dumps(
                {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in value.items()}
            )
        else:
            text = str(value)
        env[f"MS_{name.upper()}"] = text
    for name in secrets:
        env[f"MS_{name.upper()}"] = getattr(settings, name).get_secret_value()
    return env


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment with `settings` as MS_* variables, output unbuffered."""
    env = dict(os.environ)
    env.update(settings_env(settings))
    env["PYTHONUNBUFFERED"] = "1"
    return env


_WORKER_PORTS: set[int] = set()  # metrics ports handed to the workers this process started


def worker_metrics_port(preferred: int) -> int:
    """`preferred` if it is free and no other worker of this process was given it, else a free
    port: workers started back to back would otherwise all be given the same free port."""
    port = free_port(preferred)
    while port in _WORKER_PORTS:
        port = free_port(0)
    _WORKER_PORTS.add(port)
    return port


@dataclass
class WorkerProcess:
    """One `python -m streams worker` process with its own log file, and its own port for
    /metrics, /health and /ready (`metrics_url`)."""

    settings: Settings
    log_path: Path
    name: str = "worker"
    process: ManagedProcess = field(init=False)
    metrics_port: int = field(init=False)

    def __post_init__(self) -> None:
        self.metrics_port = worker_metrics_port(self.settings.metrics_port)
        env = child_env(self.settings)
        env["MS_METRICS_PORT"] = str(self.metrics_port)
        self.process = ManagedProcess(
            name=self.name,
            argv=[sys.executable, "-m", "streams", "worker"],
            log_path=self.log_path,
            pid_path=self.log_path.with_suffix(".pid"),
            env=env,
            cwd=REPO,
        )

    @property
    def metrics_url(self) -> str:
        """Where the worker serves /metrics, /health and /ready."""
        return f"http://{self.settings.metrics_host}:{self.metrics_port}"

    def start(self) -> None:
        self.process.start()

    def stop(self, grace: float = 20.0) -> int | None:
        return self.process.stop(grace=grace)

    def kill(self) -> None:
        self.process.kill()

    def running(self) -> bool:
        return self.process.running()

    def log(self) -> str:
        return log_tail(self.log_path, 6000)


@dataclass
class DashboardProcess:
    """One `python -m dashboard` process on 127.0.0.1, reading the topics of `settings`. A token,
    if given, travels in MS_DASHBOARD_TOKEN (never on the command line, which `ps` shows)."""

    settings: Settings
    log_path: Path
    port: int = DASHBOARD_PORT
    token: str | None = None
    process: ManagedProcess = field(init=False)

    def __post_init__(self) -> None:
        self.port = free_port(self.port)
        env = child_env(self.settings)
        env.pop("MS_DASHBOARD_TOKEN", None)
        if self.token is not None:
            env["MS_DASHBOARD_TOKEN"] = self.token
        self.process = ManagedProcess(
            name="dashboard",
            argv=[sys.executable, "-m", "dashboard", "--host", "127.0.0.1", "--port", str(self.port)],
            log_path=self.log_path,
            pid_path=self.log_path.with_suffix(".pid"),
            env=env,
            cwd=REPO,
        )

    @property
    def url(self) -> str:
        """The page's address; with the token, the link that opens a session."""
        return f"http://127.0.0.1:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until it accepts connections."""
        self.process.start()
        wait_until(
            lambda: port_open("127.0.0.1", self.port),
            timeout=timeout,
            what=f"the dashboard on port {self.port}",
            alive=self.process.raise_if_exited,
        )

    def stop(self) -> int | None:
        return self.process.stop(grace=10.0)

    def running(self) -> bool:
        return self.process.running()

    def log(self) -> str:
        return log_tail(self.log_path, 6000)


@dataclass
class GatewayProcess:
    """One `python -m streams gateway` process (the OpenRTB HTTP bidder) on 127.0.0.1, on
    `settings.gateway_port` when it is free, else one the OS picks. Its notice URLs must reach
    it, so the workers that sign them need `notice_base_url` (`worker_settings`)."""

    settings: Settings
    log_path: Path
    port: int = field(init=False)
    process: ManagedProcess = field(init=False)

    def __post_init__(self) -> None:
        self.port = free_port(self.settings.gateway_port)
        env = child_env(self.settings)
        env.update(
            MS_GATEWAY_HOST="127.0.0.1",
            MS_GATEWAY_PORT=str(self.port),
            MS_NOTICE_BASE_URL=self.notice_base_url,
        )
        self.process = ManagedProcess(
            name="gateway",
            argv=[sys.executable, "-m", "streams", "gateway"],
            log_path=self.log_path,
            pid_path=self.log_path.with_suffix(".pid"),
            env=env,
            cwd=REPO,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bid_url(self) -> str:
        return self.url + self.settings.gateway_bid_path

    @property
    def notice_base_url(self) -> str:
        return self.url + self.settings.gateway_notice_path

    def worker_settings(self) -> Settings:
        """`settings` for a worker whose bids' notice URLs point at this gateway."""
        return self.settings.model_copy(update={"notice_base_url": self.notice_base_url})

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until /ready (its reply consumer is assigned)."""
        self.process.start()
        wait_until(
            lambda: answers_ok(f"{self.url}/ready"),
            timeout=timeout,
            what="the gateway's /ready",
            alive=self.process.raise_if_exited,
        )

    def stop(self) -> int | None:
        return self.process.stop(grace=10.0)

    def kill(self) -> None:
        self.process.kill()

    def running(self) -> bool:
        return self.process.running()

    def log(self) -> str:
        return log_tail(self.log_path, 6000)


def prometheus_config(
    workers: Sequence[str], triton: str, *, port: int, scrape_interval_s: float = 5.0
) -> dict[str, object]:
    """Compose's Prometheus configuration (observability/prometheus/prometheus.yml) with the local
    stack's real targets (`host:port` of each worker's /metrics and of Triton's metrics port):
    the same jobs and the same alert rules, scraped every `scrape_interval_s`."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    interval = f"{scrape_interval_s:g}s"
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    targets = {"marketing-scorer": list(workers), "triton": [triton], "prometheus": [f"127.0.0.1:{port}"]}
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)  # compose finds the worker replicas by DNS
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    return dict(config)


@dataclass
class PrometheusProcess:
    """Debian's Prometheus (`make prometheus` installs it) on 127.0.0.1, scraping `workers` and
    `triton` (`host:port` each) with compose's jobs and alert rules; its data under `state_dir`,
    fresh at every start."""

    workers: Sequence[str]
    triton: str
    state_dir: Path = STATE_DIR / "prometheus"
    port: int = PROMETHEUS_PORT
    scrape_interval_s: float = 5.0
    process: ManagedProcess = field(init=False)

    def __post_init__(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise StackError("prometheus is not installed: `make prometheus` installs Debian's package")
        self.port = free_port(self.port)
        home = self.state_dir / str(self.port)
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        config = home / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                prometheus_config(
                    self.workers, self.triton, port=self.port, scrape_interval_s=self.scrape_interval_s
                ),
                indent=2,
            )
        )
        self.process = ManagedProcess(
            name="prometheus",
            argv=[
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
            ],
            log_path=home / "prometheus.log",
            pid_path=home / "prometheus.pid",
            cwd=home,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until it is ready (its rules loaded, scraping)."""
        self.process.start()
        wait_until(
            lambda: answers_ok(f"{self.url}/-/ready"),
            timeout=timeout,
            what="Prometheus readiness",
            alive=self.process.raise_if_exited,
        )

    def api(self, path: str) -> object:
        """The `data` of a Prometheus HTTP API answer, e.g. api("targets")."""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}", timeout=10) as response:
            return json.loads(response.read())["data"]

    def stop(self) -> int | None:
        return self.process.stop(grace=10.0)

    def log(self) -> str:
        return log_tail(self.process.log_path, 6000)


@contextmanager
def running_stack(progress: Progress = _quiet, **kwargs: object) -> Iterator[LocalStack]:
    stack = LocalStack(**kwargs)  # type: ignore[arg-type]
    stack.up(progress)
    try:
        yield stack
    finally:
        progress("stopping Triton and Kafka")
        stack.down()
