"""An open-loop HTTP load generator: request i leaves at start + i / rate, whatever the server did
with the requests before it, so a slow server cannot slow the offered rate (a closed loop would
hide its queueing: coordinated omission). Latency is counted from the request's scheduled time,
so a client that falls behind its schedule is charged too, and every request has a timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np


@dataclass
class Shot:
    index: int
    scheduled: float  # time.monotonic()
    sent: float = 0.0
    done: float = 0.0
    status: int | None = None  # None: no response (timeout or connection error)
    body: bytes = b""
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.done - self.scheduled) * 1000


async def fire(
    session: aiohttp.ClientSession,
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    timeout_s: float,
    on_response: Callable[[Shot], Coroutine[Any, Any, None]] | None = None,
) -> list[Shot]:
    """POST `bodies` to `url` at `rate` per second, open loop; `on_response` runs (as a task of
    its own) after each answer, e.g. to send the exchange's notices."""
    shots = [Shot(i, 0.0) for i in range(len(bodies))]
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    followups: list[asyncio.Task[None]] = []

    async def one(shot: Shot) -> None:
        shot.sent = time.monotonic()
        try:
            async with session.post(
                url, data=bodies[shot.index], headers={"Content-Type": "application/json"}, timeout=timeout
            ) as resp:
                shot.body = await resp.read()
                shot.status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            shot.error = type(exc).__name__
        shot.done = time.monotonic()
        if on_response is not None and shot.status is not None:
            followups.append(asyncio.create_task(on_response(shot)))

    start = time.monotonic() + 0.05
    tasks = []
    for shot in shots:
        shot.scheduled = start + shot.index / rate
        if (ahead := shot.scheduled - time.monotonic()) > 0:
            await asyncio.sleep(ahead)
        tasks.append(asyncio.create_task(one(shot)))
    await asyncio.gather(*tasks)
    await asyncio.gather(*followups)
    return shots


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if len(values) else float("nan")


def summary(shots: Sequence[Shot], rate: float, tmax_ms: float) -> dict[str, Any]:
    """What an exchange sees: the rate held, the share answered (any status) within tmax, and the
    latency of the answers. A request without an answer counts as outside tmax."""
    answered = [s for s in shots if s.status is not None]
    lat = [s.latency_ms for s in answered]
    span = max((s.done for s in answered), default=0.0) - min((s.scheduled for s in shots), default=0.0)
    lag = [(s.sent - s.scheduled) * 1000 for s in shots]
    return {
        "requests": len(shots),
        "offered_rate_per_s": rate,
        "answered_per_s": len(answered) / span if span > 0 else 0.0,
        "within_tmax_share": sum(1 for x in lat if x <= tmax_ms) / len(shots) if shots else 0.0,
        "tmax_ms": tmax_ms,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "max_ms": max(lat, default=float("nan")),
        "client_send_lag_p99_ms": pct(lag, 99),
        "status": {str(k): v for k, v in sorted(Counter(s.status for s in answered).items())},
        "errors": dict(Counter(s.error for s in shots if s.error)),
    }
