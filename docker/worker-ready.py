#!/usr/bin/env python3
"""The worker container's healthcheck: exit 0 when the worker's `GET /ready` answers 200.

The worker serves /ready on MS_METRICS_HOST:MS_METRICS_PORT (127.0.0.1:9400 by default). With
MS_METRICS_PORT=0 it binds a free port: the test deployment does that, because its replicas share
the host's network and cannot all have 9400. The port is then the one the worker listens on,
read from /proc: the listening TCP sockets of the other processes in this container.
Standard library only; prints why it is not ready, which `docker inspect` keeps.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 3.0
LISTEN = "0A"  # TCP state in /proc/net/tcp


def listening_ports(host: str) -> list[int]:
    """Ports on `host` (or any address) that a process of this container, but this one, listens on."""
    inodes = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        if fd_dir.parent.name == str(os.getpid()):
            continue
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:  # a process that ended, or one we may not read
            continue
        inodes.update(link[8:-1] for link in links if link.startswith("socket:["))
    wanted = {"00000000", "".join(f"{int(b):02X}" for b in reversed(host.split(".")))}
    ports = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port = fields[1].split(":")
        if fields[3] == LISTEN and fields[9] in inodes and address in wanted:
            ports.append(int(port, 16))
    return sorted(ports)


def ready(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.status == 200, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:  # 503: not ready, with what is missing
        return False, exc.read().decode(errors="replace")
    except OSError as exc:
        return False, str(exc)


def main() -> int:
    host = os.environ.get("MS_METRICS_HOST", "127.0.0.1")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    port = int(os.environ.get("MS_METRICS_PORT", "9400"))
    ports = [port] if port else listening_ports(host)
    if not ports:
        print("the worker listens on no port yet")
        return 1
    answers = []
    for candidate in ports:
        ok, body = ready(f"http://{host}:{candidate}/ready")
        if ok:
            return 0
        answers.append(f"{candidate}: {body}")
    print("; ".join(answers))
    return 1


if __name__ == "__main__":
    sys.exit(main())
