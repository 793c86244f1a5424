"""Run the real `tritonserver` binary that ships inside the nvidia-pytriton wheel.

The wheel's server has only the python backend, and the backend's stub embeds a Python
interpreter, so the process needs a little wiring that `pip install` does not do:

- a backend folder `python/` linking the backend library, its utils module and the stub built
  for *our* Python (3.11);
- PATH with our venv's bin first, so the stub's interpreter finds the venv's packages
  (onnxruntime, numpy) when it imports model.py;
- LD_LIBRARY_PATH with the base interpreter's LIBDIR before the wheel's bundled libs: with a
  pyenv Python the stub otherwise loads the wheel's libpython and fails with
  `'_thread.RLock' object has no attribute '_recursion_count'`.

Everything listens on loopback only (HTTP, gRPC and metrics). Models are loaded explicitly, one
`--load-model` per folder holding a config.pbtxt, so helper folders in a repository (the
canonical one has `cpu/` and `__pycache__/`) are never mistaken for models.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from stack.errors import StackError
from stack.process import ManagedProcess, env_with, free_port, log_tail, stop_orphans, wait_until

log = logging.getLogger("stack.triton")

STUB_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("nvidia-pytriton is not installed: it ships the tritonserver binary")
    return Path(next(iter(spec.submodule_search_locations)))


def tritonserver_binary() -> Path:
    """The tritonserver executable inside the pytriton wheel (found without importing pytriton)."""
    binary = _pytriton_dir() / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        raise StackError(f"{binary} is missing from the nvidia-pytriton wheel")
    return binary


def _bundled_libs() -> Path:
    """The wheel's vendored shared libraries (auditwheel's `nvidia_pytriton.libs`)."""
    return _pytriton_dir().parent / "nvidia_pytriton.libs"


@dataclass
class TritonServer:
    """One tritonserver process serving `repository`, its files under `state_dir/triton`."""

    repository: Path
    state_dir: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    cpu_affinity: list[int] | None = None
    log_verbose: int = 0
    _process: ManagedProcess | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # The server runs with cwd=state_dir/triton: relative paths would silently point elsewhere.
        self.repository = Path(self.repository).resolve()
        self.state_dir = Path(self.state_dir).resolve()

    @property
    def home(self) -> Path:
        return self.state_dir / "triton"

    @property
    def log_path(self) -> Path:
        return self.home / f"triton-{self.grpc_port}.log"  # per port: two stacks can run side by side

    @property
    def pid_path(self) -> Path:
        return self.home / f"tritonserver-{self.grpc_port}.pid"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """Also the process-group id: the server leads its own group, the python stubs join it."""
        return self._process.pid if self._process else None

    def model_names(self) -> list[str]:
        """Every folder of the repository that holds a config.pbtxt, sorted."""
        return sorted(p.parent.name for p in self.repository.glob("*/config.pbtxt"))

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def _backend_dir(self) -> Path:
        """`backends/python/` with links into the wheel; rebuilt every start so it never goes stale."""
        triton_dir = _pytriton_dir() / "tritonserver"
        sources = {
            "libtriton_python.so": triton_dir / "backends" / "python" / "libtriton_python.so",
            "triton_python_backend_utils.py": triton_dir
            / "backends"
            / "python"
            / "triton_python_backend_utils.py",
            "triton_python_backend_stub": triton_dir
            / "python_backend_stubs"
            / STUB_PYTHON
            / "triton_python_backend_stub",
        }
        backends = self.home / "backends"
        python_dir = backends / "python"
        if python_dir.exists():
            shutil.rmtree(python_dir)
        python_dir.mkdir(parents=True)
        for name, source in sources.items():
            if not source.exists():
                raise StackError(
                    f"{source} is missing from the nvidia-pytriton wheel (Python {STUB_PYTHON} stub?)"
                )
            (python_dir / name).symlink_to(source)
        return backends

    def _choose_ports(self) -> None:
        """Keep the configured ports when free, else take free ones (never the same one twice)."""
        taken: set[int] = set()
        for attr in ("http_port", "grpc_port", "metrics_port"):
            port = free_port(getattr(self, attr), self.host)
            while port in taken:
                port = free_port(0, self.host)
            taken.add(port)
            setattr(self, attr, port)

    def _environment(self) -> dict[str, str]:
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        library_path = [p for p in (libdir, str(_bundled_libs()), os.environ.get("LD_LIBRARY_PATH", "")) if p]
        venv_bin = str(Path(sys.prefix) / "bin")
        return env_with({"LD_LIBRARY_PATH": os.pathsep.join(library_path)}, path_prepend=[venv_bin])

    def argv(self, backend_dir: Path) -> list[str]:
        models = self.model_names()
        argv = [
            str(tritonserver_binary()),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_dir}",
            "--model-control-mode=explicit",
            *(f"--load-model={name}" for name in models),
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true",  # nv_inference_* for Prometheus (observability/prometheus)
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=2",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.cpu_affinity:
            # taskset sets the mask before exec, so every thread and every stub inherits it.
            taskset = shutil.which("taskset")
            if taskset is None:
                raise StackError("cpu_affinity needs `taskset` (util-linux) on PATH")
            argv = [taskset, "--cpu-list", ",".join(str(c) for c in self.cpu_affinity), *argv]
        return argv

    def start(self, timeout: float = 120.0) -> None:
        """Start the server and return once it is live and every model is ready.

        Raises StackError with the tail of triton.log if the server exits or is not ready in
        `timeout` seconds; the process group is stopped before raising.
        """
        if self.running():
            raise StackError("tritonserver is already running")
        models = self.model_names()
        if not models:
            raise StackError(
                f"{self.repository} holds no model (no */config.pbtxt); run `python -m triton_models.build`"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        stop_orphans(self.home, "tritonserver-*.pid")  # frees the ports a killed run held
        self._choose_ports()
        argv = self.argv(self._backend_dir())
        self._process = ManagedProcess(
            name="tritonserver",
            argv=argv,
            log_path=self.log_path,
            pid_path=self.pid_path,
            env=self._environment(),
            cwd=self.home,
        )
        log.info("starting tritonserver (%s) on %s: %s", ", ".join(models), self.grpc_url, self.repository)
        started = time.monotonic()
        self._process.start()
        try:
            wait_until(
                self._ready,
                timeout=timeout,
                what="tritonserver readiness",
                alive=self._process.raise_if_exited,
            )
        except StackError as exc:
            self.stop()
            errors = self.log_errors()
            summary = "\n".join(["errors in triton.log:", *errors, ""]) if errors else ""
            if "exited with code" in str(exc):
                raise StackError(f"{summary}{exc}") from exc
            raise StackError(f"{summary}{exc}; log {self.log_path}:\n{log_tail(self.log_path)}") from exc
        log.info("tritonserver ready in %.1fs (pid %s)", time.monotonic() - started, self.pid)

    def log_errors(self, limit: int = 8) -> list[str]:
        """The last error lines of triton.log: the tail alone is mostly the wide model-status table."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        errors = [line for line in lines if line.startswith("E") or line.startswith("error:")]
        return [line[:600] for line in errors[-limit:]]

    def _ready(self) -> bool:
        import tritonclient.http as httpclient
        from tritonclient.utils import InferenceServerException

        try:
            client = httpclient.InferenceServerClient(
                self.http_url, connection_timeout=1.0, network_timeout=2.0
            )
        except InferenceServerException:
            return False
        try:
            return bool(client.is_server_live()) and all(client.is_model_ready(m) for m in self.model_names())
        except (InferenceServerException, OSError):
            return False
        finally:
            client.close()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group (Triton drains for --exit-timeout-secs), SIGKILL what remains."""
        if self._process is not None:
            code = self._process.stop(grace=grace)
            log.info("tritonserver stopped (exit code %s)", code)

    def kill(self) -> None:
        """SIGKILL the whole process group at once (fault-injection tests)."""
        if self._process is not None:
            self._process.kill()

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
