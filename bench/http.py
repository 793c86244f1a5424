"""The HTTP bidder benchmark: our OpenRTB endpoint against a raw HTTP floor, in the same run, on
the same machine, under the same mixed load, on the same arrival schedule.

    flock /tmp/ms-integration.lock flock /tmp/ms-cpu.lock \
        .venv/bin/python -m bench.http [--rates 100,200,300,400] [--seconds 15] [--mixed-rate 85]

- ours: the gateway (`python -m streams gateway`) in front of a worker, on the local stack's
  Kafka and Triton, answering bid requests for Instacart users whose clicks were fed first;
  every bid it makes goes through the seeded auction (`bench.market.model`) and its nurl, burl
  or lurl is called as an exchange calls it, so the notices' load is part of the run;
- the floor: the same aiohttp application and runner (`streams.gateway.server.make_app`,
  `runner_for`: same parser bounds, keep-alive, in-flight guard, metrics) in a process of its
  own, whose bid handler answers 204 at once: what HTTP alone costs on this machine;
- both while clickstream, chat and social flow to the worker at the demo's mix (`--mixed-rate`
  events/s, as `bench.run`'s mixed bid part), from a producer thread, for the whole run;
- each rate: the floor, then ours, on the same request bodies and the same open-loop schedule
  (`bench.openloop`), tmax = 120 ms in every request.

Reported per rate and target: the rate held, the share answered within tmax, p50/p99 from the
request's scheduled time to its response, and for ours the gateway's own count of answers by
outcome (its /metrics): a `deadline` answer is a 204 sent at the deadline because the worker's
reply did not come, so it is within tmax but not a decision; `decided_within_tmax_share` counts
only the worker's answers. The highest rate whose decided share is >= 99% is stated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from prometheus_client.parser import text_string_to_metric_families

from bench.market.exchange import bid_requests, run_exchange
from bench.market.model import Market, MarketConfig
from bench.openloop import fire, summary
from producers.events import EventFactory, instacart_orders
from producers.kafka import make_producer, produce
from stack.local import REPO, STATE_DIR, LocalStack, WorkerProcess, child_env, running_stack
from stack.observe import wait_assigned, wait_caught_up
from stack.process import ManagedProcess, free_port, wait_until
from streams.settings import Settings

TMAX_MS = 120
TARGET_SHARE = 0.99
TARGET_P99_MS = 50.0


# --- the floor server (run in its own process: `python -m bench.http floor-server`) ---------------


class ConstantNoBid:
    """The floor's bid handler: every request answered 204 without reading it further."""

    async def answer(self, raw: bytes, arrived: float, arrived_wall_s: float) -> Any:
        from streams.gateway.bids import Answer

        return Answer(204, b"", "no_bid")


class NoKafka:
    """The floor has no Kafka: a notice sent to it would get 503 (none is: it never bids)."""

    instance = "floor"

    async def send(self, topic: str, value: bytes, **_: Any) -> Any:
        from streams.gateway.bus import KafkaUnavailable

        raise KafkaUnavailable("the HTTP floor has no Kafka")

    def ready(self) -> bool:
        return True


async def serve_floor(settings: Settings) -> None:
    from aiohttp import web

    from streams.gateway.bids import BidGateway
    from streams.gateway.metrics import GatewayMetrics
    from streams.gateway.notices import NoticeDesk
    from streams.gateway.server import make_app, runner_for

    metrics = GatewayMetrics()
    notices = NoticeDesk(settings, NoKafka(), settings.notice_signer(), metrics)

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"ready": True, "missing": []})

    # make_app's bid route calls only `answer` on its BidGateway
    app = make_app(settings, cast(BidGateway, ConstantNoBid()), notices, metrics, ready)
    runner = runner_for(app, settings)
    await runner.setup()
    await web.TCPSite(runner, settings.gateway_host, settings.gateway_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"floor on http://{settings.gateway_host}:{settings.gateway_port}", flush=True)
    await stop.wait()
    await runner.cleanup()


# --- the system under test ------------------------------------------------------------------------


@dataclass
class Bidder:
    settings: Settings
    ours: str  # bid URL of the gateway
    floor: str  # bid URL of the floor server
    gateway_metrics: str
    users: list[str]


def _process(name: str, argv: Sequence[str], settings: Settings, prefix: str) -> ManagedProcess:
    log = STATE_DIR / "logs" / f"{prefix}{name}.log"
    return ManagedProcess(
        name=name,
        argv=list(argv),
        log_path=log,
        pid_path=log.with_suffix(".pid"),
        env=child_env(settings),
        cwd=REPO,
    )


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _wait_http(url: str, process: ManagedProcess, timeout_s: float) -> None:
    wait_until(lambda: _ready(url), timeout=timeout_s, what=url, alive=process.raise_if_exited)


@contextmanager
def bidder(stack: LocalStack, users: int, seed: int) -> Iterator[Bidder]:
    """Topics of their own, a worker, the gateway and the floor, and `users` Instacart users
    whose first order was fed as clicks (so the bidder has their history)."""
    prefix = f"bench-http-{int(time.time())}-"
    gw_port, floor_port = free_port(0), free_port(0)
    base = stack.settings(topic_prefix=prefix)
    settings = stack.settings(
        topic_prefix=prefix,
        gateway_port=gw_port,
        notice_base_url=f"http://127.0.0.1:{gw_port}{base.gateway_notice_path}",
    )
    stack.create_topics(settings)
    worker = WorkerProcess(settings, STATE_DIR / "logs" / f"{prefix}worker.log")
    gateway = _process("gateway", [sys.executable, "-m", "streams", "gateway"], settings, prefix)
    floor = _process(
        "floor",
        [sys.executable, "-m", "bench.http", "floor-server"],
        stack.settings(topic_prefix=prefix, gateway_port=floor_port),
        prefix,
    )
    factory = EventFactory(seed)
    picked = list(dict(reversed(instacart_orders())).items())[:users]
    history = [e for u, items in picked for e in factory.session(u, items)]
    worker.start()
    gateway.start()
    floor.start()
    try:
        wait_assigned(settings, settings.topics.consumed, timeout=120, alive=worker.process.raise_if_exited)
        _wait_http(f"http://127.0.0.1:{gw_port}/ready", gateway, 60)
        _wait_http(f"http://127.0.0.1:{floor_port}/ready", floor, 30)
        produce(settings, history)
        wait_caught_up(settings, settings.topics.consumed, timeout=300, alive=worker.process.raise_if_exited)
        yield Bidder(
            settings,
            f"http://127.0.0.1:{gw_port}{settings.gateway_bid_path}",
            f"http://127.0.0.1:{floor_port}{settings.gateway_bid_path}",
            f"http://127.0.0.1:{gw_port}/metrics",
            [f"u{u}" for u, _ in picked],
        )
    finally:
        for proc in (floor, gateway):
            proc.stop(grace=10)
        worker.stop()


def gateway_outcomes(url: str) -> dict[str, float]:
    """The gateway's answers so far, by outcome (its requests counter)."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_gateway_requests"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["outcome"]] = out.get(sample.labels["outcome"], 0) + sample.value
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {k: int(v - before.get(k, 0)) for k, v in after.items() if v - before.get(k, 0)}


@contextmanager
def mixed_load(settings: Settings, rate: float, seed: int = 14) -> Iterator[dict[str, Any]]:
    """Clickstream, chat and social at the demo's mix, `rate` events/s, from a producer thread
    that is flowing (for 1 s) before the body runs and stops when it ends."""
    box: dict[str, Any] = {"rate_per_s": rate}
    if rate <= 0:
        yield box
        return
    stop = threading.Event()

    def run() -> None:
        producer = make_producer(settings)
        start, sent = time.monotonic(), 0
        for record in EventFactory(seed).stream(("clickstream", "chat", "social")):
            while not stop.is_set() and (ahead := start + sent / rate - time.monotonic()) > 0:
                producer.poll(min(ahead, 0.1))
            if stop.is_set():
                break
            producer.produce(settings.topics.name(record.topic), key=record.key, value=record.value)
            producer.poll(0)
            sent += 1
        producer.flush(30)
        box.update(events=sent, achieved_rate_per_s=sent / (time.monotonic() - start))

    thread = threading.Thread(target=run, name="bench-mixed-load")
    thread.start()
    time.sleep(1.0)  # the mixed load is flowing before the first measured request
    try:
        yield box
    finally:
        stop.set()
        thread.join()


async def floor_run(url: str, bodies: Sequence[bytes], rate: float) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:
        shots = await fire(session, url, bodies, rate, timeout_s=1.0)
    return summary(shots, rate, TMAX_MS)


def ours_run(b: Bidder, market: Market, rate: float, seconds: float, first: int, seed: int) -> dict[str, Any]:
    count = int(rate * seconds)
    bodies, ids, conds = bid_requests(market, b.users, count, TMAX_MS, seed, first=first)
    before = gateway_outcomes(b.gateway_metrics)
    lat, tally, _ = asyncio.run(
        run_exchange(b.ours, market, bodies, ids, conds, rate=rate, timeout_s=1.0, tmax_ms=TMAX_MS)
    )
    outcomes = _delta(gateway_outcomes(b.gateway_metrics), before)
    decided = outcomes.get("bid", 0) + outcomes.get("no_bid", 0)
    return lat | {
        "gateway_outcomes": outcomes,
        "decided_within_tmax_share": min(decided / count, lat["within_tmax_share"]) if count else 0.0,
        "auctions": tally.report(),
    }


def warm_up(b: Bidder, market: Market, seed: int) -> None:
    """200 requests at 50/s to auctions of their own (from 10,000,000 on): a fresh worker's first
    batches are slow."""
    print("warm-up: 200 requests at 50/s", flush=True)
    ours_run(b, market, 50, 4, first=10_000_000, seed=seed + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", default="bench", choices=("bench", "floor-server"))
    parser.add_argument("--rates", default="100,200,300,400")
    parser.add_argument("--seconds", type=float, default=15.0, help="per rate and target")
    parser.add_argument("--mixed-rate", type=float, default=85.0)
    parser.add_argument("--users", type=int, default=593)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--auction-type", type=int, choices=(1, 2), default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    if args.command == "floor-server":
        asyncio.run(serve_floor(Settings()))
        return 0

    from bench.run import commit, machine

    rates = [float(r) for r in args.rates.split(",")]
    market = Market(MarketConfig(auction_type=args.auction_type), args.seed)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
        "args": vars(args) | {"out": str(args.out)},
        "seed": args.seed,
        "market": market.config.describe(),
        "tmax_ms": TMAX_MS,
        "rates": [],
    }
    with (
        running_stack(progress=lambda m: print(f"stack: {m}", flush=True)) as stack,
        bidder(stack, args.users, args.seed) as b,
    ):
        warm_up(b, market, args.seed)
        with mixed_load(b.settings, args.mixed_rate) as load:
            first = 0
            for rate in rates:
                count = int(rate * args.seconds)
                bodies, _, _ = bid_requests(market, b.users, count, TMAX_MS, args.seed, first=first)
                print(f"rate {rate:g}/s: the floor ({count} requests)...", flush=True)
                floor = asyncio.run(floor_run(b.floor, bodies, rate))
                print(f"  {_line(floor)}", flush=True)
                print(f"rate {rate:g}/s: ours ({count} requests)...", flush=True)
                ours = ours_run(b, market, rate, args.seconds, first, args.seed)
                print(
                    f"  {_line(ours)} decided={ours['decided_within_tmax_share']:.4f} {ours['gateway_outcomes']}"
                )
                results["rates"].append({"rate_per_s": rate, "floor": floor, "ours": ours})
                first += count
        results["mixed_load"] = load
    held = [
        r["rate_per_s"] for r in results["rates"] if r["ours"]["decided_within_tmax_share"] >= TARGET_SHARE
    ]
    results["highest_rate_99pct_decided_within_tmax"] = max(held, default=None)
    results["target"] = _target(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"http-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    print(f"written to {path} and {path.with_suffix('.md')}")
    return 0


def _line(s: dict[str, Any]) -> str:
    return (
        f"held {s['answered_per_s']:.1f}/s, within tmax {s['within_tmax_share']:.4f}, "
        f"p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, status {s['status']}, errors {s['errors']}"
    )


def _target(results: dict[str, Any]) -> dict[str, Any]:
    at300 = next((r["ours"] for r in results["rates"] if r["rate_per_s"] == 300), None)
    if at300 is None:
        return {"measured": False}
    return {
        "measured": True,
        "decided_within_tmax_share": at300["decided_within_tmax_share"],
        "p99_ms": at300["p99_ms"],
        "met": at300["decided_within_tmax_share"] >= TARGET_SHARE and at300["p99_ms"] <= TARGET_P99_MS,
    }


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# HTTP bidder benchmark: our endpoint vs the raw HTTP floor",
        "",
        f"- date {results['date']}, commit `{results['commit']}`, seed {results['seed']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; Kafka, Triton, a worker, the "
        "gateway, the floor server and this client all on it",
        f"- mixed load: {results['mixed_load']}; tmax {results['tmax_ms']} ms; market {results['market']}",
        "",
        "| rate/s | target | held/s | within tmax | decided within tmax | p50 ms | p99 ms | gateway outcomes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rates"]:
        for name in ("floor", "ours"):
            s = r[name]
            lines.append(
                f"| {r['rate_per_s']:g} | {name} | {s['answered_per_s']:.1f} | {s['within_tmax_share']:.4f} | "
                f"{s.get('decided_within_tmax_share', float('nan')):.4f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
                f"{s.get('gateway_outcomes', '-')} |"
            )
    lines += [
        "",
        f"Highest rate with >= 99% decided within tmax: {results['highest_rate_99pct_decided_within_tmax']}/s. "
        f"Target at 300/s (>= 99% within tmax, p99 <= 50 ms): {results['target']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
