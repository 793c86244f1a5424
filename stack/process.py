"""Child processes of the local stack: started with their output in a log file, stopped by PID.

Every server the stack starts runs in its own process group so that stopping it also stops
whatever it spawned (Triton's python-backend stubs, the JVM's children). A pid file beside the
log lets `stack down` (or the next `stack up`) clean up after a run that was killed before it
could stop its children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stack.errors import StackError

LOG_TAIL_CHARS = 4000


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """Return `preferred` if it can be bound on `host`, else a free port the OS picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise StackError(f"no free port on {host}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    alive: Callable[[], None] | None = None,
) -> float:
    """Poll `check` until it is true; return the seconds it took or raise with `what` in the message.

    `alive` is called between polls so a server that died is reported at once instead of after
    the whole timeout.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if check():
            return time.monotonic() - start
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "(no log file)"
    return data[-chars:].decode("utf-8", errors="replace")


@dataclass
class ManagedProcess:
    """One server process with its log file and pid file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    pid_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _reaped: bool = field(default=False, init=False, repr=False)

    def start(self) -> None:
        stop_stale(self.pid_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,  # own process group: stop() reaches its children too
            )
        finally:
            log.close()
        self._reaped = False
        self.pid_path.write_text(f"{self._proc.pid} {os.getpid()}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def raise_if_exited(self) -> None:
        """Raise with the log tail if the process has already exited (used while waiting on readiness)."""
        if self._proc is not None and self._proc.poll() is not None:
            raise StackError(
                f"{self.name} exited with code {self._proc.returncode} during start-up; "
                f"log {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; return the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if self._reaped:
            return proc.returncode
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=grace)
        self._finish(proc)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole group without a grace period (fault tests use this)."""
        if self._proc is not None and not self._reaped:
            _signal_group(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
            self._finish(self._proc)

    def _finish(self, proc: subprocess.Popen[bytes]) -> None:
        # Children that outlived the leader (stubs re-parented to init) are still in the group;
        # once reaped, the id may be reused, so the group is signalled only this once.
        _signal_group(proc.pid, signal.SIGKILL)
        self._reaped = True
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_stale(pid_path: Path, *, force: bool = False) -> bool:
    """Kill the process group recorded in a pid file left by a run that did not clean up.

    The file also names the Python process that started the server (its owner). While that
    owner lives, the server belongs to a running stack (a demo next to a test run, say) and is
    left alone unless `force` is set (`python -m stack down`).
    """
    try:
        fields = pid_path.read_text().split()
        pid = int(fields[0])
        owner = int(fields[1]) if len(fields) > 1 else None
    except (FileNotFoundError, ValueError, IndexError):
        return False
    if not force and owner is not None and owner != os.getpid() and _alive(owner):
        return False
    _signal_group(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        pid_path.unlink()
    return True


def stop_orphans(directory: Path, pattern: str) -> list[Path]:
    """stop_stale() for every pid file matching `pattern`: frees the ports a killed run held."""
    return [p for p in sorted(directory.glob(pattern)) if stop_stale(p)]


def env_with(extra: Mapping[str, str], path_prepend: Sequence[str] = ()) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    if path_prepend:
        env["PATH"] = os.pathsep.join([*path_prepend, env.get("PATH", "")])
    return env
