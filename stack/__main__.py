"""`python -m stack demo|up|down`: the embedded local stack.

demo  starts Kafka + Triton + a worker, produces events (and some bad records), prints every
      output as it arrives, waits until the worker has committed every input, prints a summary
      and stops everything. Exit code 0 only if every input got its output or dead letter.
      It starts the live dashboard too and prints its URL (--keep-dashboard: up until Ctrl-C),
      and the worker's /metrics, /health and /ready (--prometheus: a Prometheus scraping it).
up    starts Kafka + Triton, the dashboard and the OpenRTB HTTP gateway, and keeps them running
      until Ctrl-C (point your own worker at them; --prometheus: a Prometheus scraping it and Triton).
down  stops whatever a killed run left behind (by the pid files under .stack/).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from producers.corpus import BRANDS, held_out
from producers.events import EventFactory, Produced, bad_records, request_id_of
from producers.kafka import produce
from stack.errors import StackError
from stack.local import (
    STATE_DIR,
    DashboardProcess,
    GatewayProcess,
    LocalStack,
    PrometheusProcess,
    WorkerProcess,
    running_stack,
    worker_metrics_port,
)
from stack.observe import Consumed, TopicReader, wait_assigned, wait_caught_up
from stack.process import stop_stale
from stack.served import served_text_encoder, training_of, upgrade_hint
from streams.serde import loads
from streams.settings import Settings
from streams.topics import INPUTS

console = Console(highlight=False, soft_wrap=True)  # one line per record, also when piped


def _version(body: dict[str, Any]) -> str:
    """Which model version answered (outputs carry `model: {name, version}`), and its training."""
    model = body.get("model") or (body.get("ext") or {}).get("model")
    if not model:
        return ""
    training = training_of(model["name"], int(model["version"]))
    return f"  [dim]{model['name']} v{model['version']}{f' {training}' if training else ''}[/]"


def describe(record: Consumed, base: str) -> str:
    """One line per output record, for people watching the demo, with the model version that answered."""
    return _describe(record, base) + ("" if base.endswith(".dlq") else _version(loads(record.value or b"{}")))


def _describe(record: Consumed, base: str) -> str:
    if base.endswith(".dlq"):
        reason = record.headers.get("x-dlq-reason", b"?").decode()
        return f"[red]dead-letter[/] {base:<18} reason={reason}  ({len(record.value or b'')} original bytes kept)"
    body = loads(record.value or b"{}")
    if base == "segment-updates":
        moves = " ".join([f"+{s}" for s in body["entered"]] + [f"-{s}" for s in body["exited"]])
        recs = ",".join(str(r["product_id"]) for r in body["recommendations"][:3])
        return f"[cyan]segment[/]     {body['user_id']:<8} v{body['version']} {moves:<28} recs=[{recs}]"
    if base == "ad-bids":
        seatbid = body.get("seatbid") or []
        if seatbid:
            bid = seatbid[0]["bid"][0]
            return f"[green]bid[/]         {record.key.decode() if record.key else '-':<8} {bid['price']:.2f} CPM  {bid['crid']}"
        return f"[yellow]no-bid[/]      {record.key.decode() if record.key else '-':<8} nbr={body.get('nbr')} {body['ext']['reasons'][0]}"
    if base == "brand-sentiment":
        return (
            f"[blue]brand-window[/] {body['brand']:<10} n={body['volume']:<3} mean_p_pos={body['mean_p_positive']:.2f} "
            f"negative={body['share_negative']:.0%}"
        )
    if base == "brand-alerts":
        return (
            f"[bold red]BRAND ALERT[/] {body['brand']:<10} negative={body['share_negative']:.0%} "
            f"vs baseline {body['baseline_share_negative']:.0%} (n={body['volume']})"
        )
    if base == "cs-replies":
        action = body["action"] if body["action"] == "reply" else f"handoff->{body['handoff_queue']}"
        return (
            f"[magenta]cs-reply[/]    {body['conversation_id']:<10} intent={body['intent']}({body['intent_confidence']:.2f}) "
            f"sentiment={body['sentiment']['label']:<8} {action}"
        )
    return f"{base} {record.value!r}"


BRAND_WINDOWS = 6
POSTS_PER_WINDOW = 8


def _interleave(a: Sequence[Produced], b: Sequence[Produced]) -> list[Produced]:
    """Both lists spread evenly over one, each kept in its own order (the sort is stable)."""
    placed = [(i / len(a), r) for i, r in enumerate(a)] + [(i / len(b), r) for i, r in enumerate(b)]
    return [r for _, r in sorted(placed, key=lambda t: t[0])]


def start_dashboard(settings: Settings, cleanup: ExitStack) -> DashboardProcess:
    """The live dashboard on loopback, stopped by `cleanup`; its URL is printed for people to open."""
    dashboard = DashboardProcess(settings, STATE_DIR / "logs" / f"{settings.topic_prefix}dashboard.log")
    dashboard.start()
    cleanup.callback(dashboard.stop)
    console.print(f"[bold]dashboard[/] live at [bold underline]{dashboard.url}[/] (log {dashboard.log_path})")
    return dashboard


def start_gateway(stack: LocalStack, settings: Settings, cleanup: ExitStack) -> GatewayProcess:
    """The OpenRTB HTTP gateway on loopback (it needs the topics: they are created first), stopped
    by `cleanup`; its URL is printed for exchanges (and curl) to call."""
    stack.create_topics(settings)
    gateway = GatewayProcess(settings, STATE_DIR / "logs" / f"{settings.topic_prefix}gateway.log")
    gateway.start()
    cleanup.callback(gateway.stop)
    console.print(
        f"[bold]gateway[/] OpenRTB 2.6 bids at [bold underline]{gateway.bid_url}[/], notices under "
        f"{gateway.notice_base_url}, health {gateway.url}/ready (log {gateway.log_path})"
    )
    return gateway


def start_prometheus(workers: list[str], stack: LocalStack, cleanup: ExitStack) -> PrometheusProcess:
    """Debian's Prometheus on loopback, scraping `workers` and Triton with the alert rules."""
    prometheus = PrometheusProcess(workers, f"{stack.triton.host}:{stack.triton.metrics_port}")
    prometheus.start()
    cleanup.callback(prometheus.stop)
    console.print(
        f"[bold]prometheus[/] at [bold underline]{prometheus.url}[/] scraping {', '.join(workers)} and "
        f"Triton's {stack.triton.metrics_url}, with observability/prometheus/alerts.yml"
    )
    return prometheus


def keep_serving(dashboard: DashboardProcess) -> None:
    """Block until Ctrl-C (or the dashboard exits), for people still looking at the page."""
    console.print(f"[bold]dashboard[/] still live at {dashboard.url}; Ctrl-C stops it, Triton and Kafka")
    try:
        while dashboard.running():
            threading.Event().wait(1.0)
    except KeyboardInterrupt:
        return
    console.print(f"[red]the dashboard exited[/]; its log:\n{dashboard.log()}")


def demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    console.print(f"[bold]model[/] serving {served_text_encoder()}")
    with (
        running_stack(progress=lambda m: console.print(f"[bold]stack[/] {m}")) as stack,
        ExitStack() as cleanup,
    ):
        settings = stack.settings(topic_prefix=f"demo-{int(time.time())}-")
        stack.create_topics(settings)
        topics = settings.topics
        worker = WorkerProcess(settings, STATE_DIR / "logs" / f"{settings.topic_prefix}worker.log")
        worker.start()
        console.print(f"[bold]worker[/] started (pid {worker.process.pid}, log {worker.log_path})")
        console.print(
            f"[bold]worker[/] metrics and health at [bold underline]{worker.metrics_url}/metrics[/], "
            f"{worker.metrics_url}/health, {worker.metrics_url}/ready"
        )
        dashboard = start_dashboard(settings, cleanup)
        if args.prometheus:
            start_prometheus([f"127.0.0.1:{worker.metrics_port}"], stack, cleanup)
        try:
            joined = wait_assigned(
                settings, topics.consumed, timeout=60, alive=worker.process.raise_if_exited
            )
            console.print(
                f"[bold]worker[/] owns all {len(topics.consumed) * settings.partitions} partitions it reads after {joined:.1f}s"
            )
            texts = held_out()
            console.print(f"[bold]texts[/] chat and social posts from the {texts.source}")
            factory = EventFactory(args.seed, texts=texts)
            stream = factory.stream(("clickstream", "chat", "bid-requests"))
            records = [next(stream) for _ in range(args.count)]
            # Social is a replayed feed with its own event times: BRAND_WINDOWS closed windows
            # per brand, ending a minute ago, with one brand's second-to-last window all negative.
            size = settings.brand_window_s
            incident = (BRANDS[1], BRAND_WINDOWS - 2)
            feed = factory.brand_feed(
                start=datetime.now(UTC) - timedelta(seconds=(BRAND_WINDOWS + 1) * size),
                windows=BRAND_WINDOWS,
                per_window=POSTS_PER_WINDOW,
                window_s=size,
                incident=incident,
            )
            records = _interleave(records, feed)
            records += [r for t in INPUTS for r in bad_records(t, max_text_chars=settings.max_text_chars)]
            watch = [*topics.outputs, *topics.dead_letters]
            with TopicReader(settings, watch) as reader:
                report_box: dict[str, object] = {}
                producer = threading.Thread(
                    target=lambda: report_box.update(report=produce(settings, records, rate=args.rate)),
                    name="producer",
                )
                producer.start()
                counts: Counter[str] = Counter()
                alerted: set[str] = set()

                def show_new() -> None:
                    # from reader.records, not poll's answer: read_to_end() below polls too
                    reader.poll(0.1)
                    for rec in reader.records[sum(counts.values()) :]:
                        base = rec.topic.removeprefix(settings.topic_prefix)
                        counts[base] += 1
                        console.print(describe(rec, base))
                        if base == "brand-alerts":
                            alerted.add(loads(rec.value or b"{}").get("brand", "?"))

                def alive() -> None:
                    show_new()
                    if not worker.running():
                        raise StackError(f"the worker exited; its log:\n{worker.log()}")

                while producer.is_alive():
                    alive()
                producer.join()
                report = report_box["report"]
                console.print(f"[bold]producer[/] {report.summary()}")  # type: ignore[attr-defined]
                took = wait_caught_up(settings, topics.consumed, timeout=args.timeout, alive=alive)
                reader.read_to_end()
                show_new()
        finally:
            code = worker.stop()
            console.print(f"[bold]worker[/] stopped (exit code {code})")
        expected_dlq = sum(1 for r in records if r.kind != "valid")
        sent = Counter(r.topic for r in records if r.kind == "valid")
        # a dead-lettered bid request that names its id is answered too (nbr 2)
        invalid_answered = sum(
            1 for r in records if r.topic == "bid-requests" and r.kind != "valid" and request_id_of(r.value)
        )
        summary = Table(title="demo summary")
        summary.add_column("topic")
        summary.add_column("records", justify="right")
        for name in ("clickstream", "chat", "social", "bid-requests"):
            summary.add_row(f"in: {name}", str(sent[name]))
        for name in (*[t.removeprefix(settings.topic_prefix) for t in topics.outputs], "*.dlq"):
            n = sum(v for k, v in counts.items() if k.endswith(".dlq")) if name == "*.dlq" else counts[name]
            summary.add_row(f"out: {name}", str(n))
        console.print(summary)
        console.print(
            f"replayed incident: {incident[0]} window {incident[1] + 1} of {BRAND_WINDOWS} all negative -> "
            + ("[green]alert raised[/]" if incident[0] in alerted else "[yellow]no alert[/]")
            + (
                f"; other brands alerted: {sorted(alerted - {incident[0]})}"
                if alerted - {incident[0]}
                else ""
            )
        )
        ok = (
            counts["cs-replies"] == sent["chat"]
            and counts["ad-bids"] == sent["bid-requests"] + invalid_answered
            and sum(v for k, v in counts.items() if k.endswith(".dlq")) == expected_dlq
        )
        console.print(
            f"worker caught up {took:.1f}s after the last event was produced; whole demo {time.monotonic() - started:.0f}s; "
            + ("[green]every input answered[/]" if ok else "[red]some inputs were not answered[/]")
        )
        if hint := upgrade_hint():
            console.print(f"[bold]model[/] {hint}")
        if args.keep_dashboard:
            keep_serving(dashboard)
    return 0 if ok else 1


def up(args: argparse.Namespace) -> int:
    stack = LocalStack()
    stack.up(progress=lambda m: console.print(f"[bold]stack[/] {m}"))
    try:
        with ExitStack() as cleanup:
            # the topics of MS_TOPIC_PREFIX, read as soon as your worker or producers create them
            settings = stack.settings()
            start_dashboard(settings, cleanup)
            gateway = start_gateway(stack, settings, cleanup)
            metrics_port = worker_metrics_port(settings.metrics_port)  # where your worker will listen
            if args.prometheus:
                start_prometheus([f"127.0.0.1:{metrics_port}"], stack, cleanup)
            console.print(
                f"export MS_KAFKA_BOOTSTRAP={stack.kafka.bootstrap} MS_TRITON_GRPC_URL={stack.triton.grpc_url} "
                f"MS_METRICS_PORT={metrics_port} MS_NOTICE_BASE_URL={gateway.notice_base_url}\n"
                f"your worker's metrics and health: http://127.0.0.1:{metrics_port}/metrics, /health, /ready\n"
                "Ctrl-C stops the gateway, the dashboard, Triton and Kafka."
            )
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.down()
    return 0


def down(_: argparse.Namespace) -> int:
    stopped = [p for p in sorted(Path(STATE_DIR).rglob("*.pid")) if stop_stale(p, force=True)]
    console.print(f"stopped {len(stopped)} leftover process group(s)" if stopped else "nothing was running")
    return 0


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the end-to-end demo")
    d.add_argument("--count", type=int, default=300, help="valid events to produce (default 300)")
    d.add_argument("--rate", type=float, default=100.0, help="events per second (default 100)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--timeout", type=float, default=180.0, help="max seconds for the worker to catch up")
    d.add_argument(
        "--keep-dashboard",
        action="store_true",
        help="keep the dashboard (and Kafka and Triton) up after the demo, until Ctrl-C",
    )
    d.add_argument(
        "--prometheus",
        action="store_true",
        help="also run Prometheus (Debian's package: make prometheus) scraping the worker and Triton",
    )
    u = sub.add_parser("up", help="start Kafka + Triton until Ctrl-C")
    u.add_argument(
        "--prometheus",
        action="store_true",
        help="also run Prometheus scraping your worker (on MS_METRICS_PORT) and Triton",
    )
    sub.add_parser("down", help="stop processes a killed run left behind")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)  # unwind through the `finally` blocks that stop servers
    try:
        return {"demo": demo, "up": up, "down": down}[args.command](args)
    except (StackError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; everything was stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
