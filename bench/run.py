"""Pipeline benchmark: the chat, clickstream and bid paths through real Kafka, a real worker and
real Triton, each next to a fair baseline run in the same session on the same inputs.

    .venv/bin/python -m bench.run [--chats 600] [--clicks 6000] [--bids 2000] [--bid-rate 200]
                                  [--mixed-rate 85] [--out bench/results]

What is measured (all in one process, one stack, one machine state):
- chat throughput: N chat messages are produced first, then a worker is started; throughput is
  N over the span between the first and last reply's Kafka timestamps (backlog drain).
- its baseline: a bare `tritonclient.grpc.aio` client scoring the SAME N texts, in batches of
  32 taken partition by partition in offset order as the worker's consumer reads a backlog,
  tokenised and padded as the worker does (longest text of the batch rounded up to 16 tokens),
  with one request in flight (the worker's chat agent has one batch in flight) and with two.
  The texts' token lengths and the padded batch lengths are reported.
- clickstream throughput: N clicks produced first, drained by a worker (input records over the
  span of its segment updates' timestamps), against a confluent-kafka passthrough on the same
  broker that consumes the same N records and produces each one to another topic (acks=all),
  timed the same way over its outputs.
- chat and bid latency: a fresh worker, already assigned and warmed up, receives events at a
  fixed rate from a producer that is already connected; latency = when this process consumed
  the result - the input record's Kafka timestamp. Bids are measured twice: alone, and under
  mixed load (clickstream, chat and social at the demo's mix, `--mixed-rate` events/s in all,
  produced from a second producer during the whole bid run).
The ratios against the baselines are the figures of merit; absolute numbers depend on the
machine, which is recorded with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from producers.events import EventFactory, Produced, instacart_orders
from producers.kafka import make_producer, produce
from stack.local import STATE_DIR, LocalStack, WorkerProcess, running_stack
from stack.observe import TopicReader, wait_assigned, wait_caught_up
from streams.serde import loads
from streams.settings import Settings
from streams.text import TextTokenizer

BATCH = 32


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def commit() -> str:
    """The checkout measured (the bench runs the worker from its own working directory)."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def backlog_batches(settings: Settings, records: list[Produced], size: int = BATCH) -> list[list[str]]:
    """The texts of `records` in the batches a consumer draining them as a backlog takes: per
    partition (murmur2 of the key, as the producer placed them), in offset order, `size` at a
    time."""
    from streams.app import key_partition

    by_partition: dict[int, list[str]] = {}
    for rec in records:
        part = key_partition(rec.key or b"", settings.partitions)
        by_partition.setdefault(part, []).append(str(loads(rec.value)["text"]))
    batches = []
    for part in sorted(by_partition):
        texts = by_partition[part]
        batches += [texts[i : i + size] for i in range(0, len(texts), size)]
    return batches


def length_profile(settings: Settings, batches: list[list[str]]) -> dict[str, Any]:
    tok = TextTokenizer(settings.tokenizer_path, settings.max_seq_len)
    lengths = [int(m.sum()) for b in batches for m in tok.encode(b).attention_mask]
    padded = [tok.encode(b).input_ids.shape[1] for b in batches]
    return {
        "texts": len(lengths),
        "tokens_p50": pct(lengths, 50),
        "tokens_p90": pct(lengths, 90),
        "tokens_max": max(lengths),
        "batches": len(batches),
        "padded_length_counts": {str(n): padded.count(n) for n in sorted(set(padded))},
    }


async def raw_triton(settings: Settings, batches: list[list[str]], inflight: int) -> dict[str, float]:
    """Texts/s of a bare aio client scoring `batches` (each tokenised as the worker does) with
    `inflight` requests at a time, over the whole set once (after one warm-up request)."""
    from tritonclient.grpc import InferInput, InferRequestedOutput
    from tritonclient.grpc.aio import InferenceServerClient

    tok = TextTokenizer(settings.tokenizer_path, settings.max_seq_len)
    encoded = [tok.encode(b) for b in batches]
    client = InferenceServerClient(url=settings.triton_grpc_url)
    requested = [InferRequestedOutput(o) for o in ("sentiment_probs", "intent_probs", "embedding")]

    def inputs(i: int) -> list[InferInput]:
        batch = encoded[i]
        a = InferInput("input_ids", list(batch.input_ids.shape), "INT64")
        a.set_data_from_numpy(batch.input_ids)
        b = InferInput("attention_mask", list(batch.attention_mask.shape), "INT64")
        b.set_data_from_numpy(batch.attention_mask)
        return [a, b]

    try:
        await client.infer("text_encoder", inputs(0), outputs=requested)  # warm-up
        queue = list(range(len(encoded)))

        async def loop() -> None:
            while queue:
                await client.infer("text_encoder", inputs(queue.pop(0)), outputs=requested)

        start = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(inflight)))
        elapsed = time.monotonic() - start
    finally:
        await client.close()
    return {
        "inflight": inflight,
        "texts": sum(map(len, batches)),
        "texts_per_s": sum(map(len, batches)) / elapsed,
    }


def passthrough(stack: LocalStack, records: list[Produced]) -> dict[str, float]:
    """A raw confluent-kafka consume-to-produce loop over the same records on the same broker:
    the floor a stream processor's own overhead is measured against."""
    from confluent_kafka import Consumer

    prefix = f"bench-pass-{int(time.time())}-"
    settings = stack.settings(topic_prefix=prefix)
    stack.create_topics(settings)
    source, sink = settings.topics.clickstream, settings.topics.segment_updates
    produce(settings, records)
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": f"{prefix}group",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 1000,  # as the worker's commit interval
            }
        )
    )
    producer = make_producer(settings)
    consumer.subscribe([source])
    moved = 0
    deadline = time.monotonic() + 300
    started: float | None = None
    try:
        # the worker's shape: batches of up to 32, each batch's outputs acknowledged (acks=all)
        # before the next is taken; offsets committed in the background (auto-commit, 1 s)
        while moved < len(records):
            if time.monotonic() > deadline:
                raise RuntimeError(f"passthrough moved {moved} of {len(records)} in 300 s")
            batch = [m for m in consumer.consume(num_messages=BATCH, timeout=0.5) if m.error() is None]
            if batch and started is None:
                started = time.monotonic()
            for msg in batch:
                producer.produce(sink, key=msg.key(), value=msg.value())
            producer.flush(60)
            moved += len(batch)
        elapsed = time.monotonic() - (started or time.monotonic())
    finally:
        consumer.close()
    return {"records": moved, "elapsed_s": elapsed, "records_per_s": moved / elapsed}


def drain(stack: LocalStack, name: str, records: list[Produced], answers: str) -> tuple[list[Any], float]:
    """Produce `records` as a backlog, then start a worker and let it drain them; its answers on
    `answers` and the span of their Kafka timestamps, in seconds."""
    settings, worker = _worker(stack, f"bench-{name}-{int(time.time())}-")
    produce(settings, records)  # backlog first, then the worker drains it
    worker.start()
    try:
        wait_caught_up(settings, settings.topics.consumed, timeout=900, alive=worker.process.raise_if_exited)
        with TopicReader(settings, [settings.topics.name(answers)]) as reader:
            out = reader.read_to_end()
    finally:
        worker.stop()
    stamps = sorted(r.timestamp_ms for r in out)
    return out, (stamps[-1] - stamps[0]) / 1000


def click_throughput(stack: LocalStack, records: list[Produced]) -> dict[str, float]:
    updates, span = drain(stack, "clicks", records, "segment-updates")
    return {
        "clicks": len(records),
        "segment_updates": len(updates),
        "span_s": span,
        "clicks_per_s": (len(records) - 1) / span,
    }


def _worker(stack: LocalStack, prefix: str) -> tuple[Settings, WorkerProcess]:
    settings = stack.settings(topic_prefix=prefix)
    stack.create_topics(settings)
    worker = WorkerProcess(settings, STATE_DIR / "logs" / f"{prefix}worker.log")
    return settings, worker


def chat_throughput(stack: LocalStack, records: list[Produced]) -> dict[str, float]:
    replies, span = drain(stack, "tp", records, "cs-replies")
    return {"messages": len(replies), "drain_s": span, "messages_per_s": (len(replies) - 1) / span}


def latency(
    stack: LocalStack,
    records: list[Produced],
    rate: float,
    answer_topic: str,
    warmup: list[Produced],
    background: list[Produced] = (),  # type: ignore[assignment]
    background_rate: float = 0.0,
) -> dict[str, Any]:
    settings, worker = _worker(stack, f"bench-lat-{answer_topic}-{int(time.time())}-")
    # One producer for the warm-up and the run, as an exchange or a chat front end keeps one: a
    # new idempotent producer holds its first records for 0.5-1 s while it gets a producer id,
    # and their timestamps would charge that to the pipeline.
    client = make_producer(settings)
    worker.start()
    try:
        wait_assigned(settings, settings.topics.consumed, timeout=120, alive=worker.process.raise_if_exited)
        produce(settings, warmup, producer=client)
        wait_caught_up(settings, settings.topics.consumed, timeout=300, alive=worker.process.raise_if_exited)
        inputs_topic = settings.topics.name(records[0].topic)
        with TopicReader(settings, [settings.topics.name(answer_topic)]) as reader:
            reader.read_to_end()  # skip the warm-up answers
            skip = len(reader.records)
            # Produce from a thread and poll here meanwhile: an answer's receive time is when
            # this process could first have seen it, not when production ended.
            box: dict[str, Any] = {}
            producer = threading.Thread(
                target=lambda: box.update(report=produce(settings, records, rate=rate, producer=client)),
                name="bench-producer",
            )
            load = threading.Thread(
                target=lambda: box.update(load=produce(settings, background, rate=background_rate)),
                name="bench-mixed-load",
            )
            if background:
                load.start()
                time.sleep(1.0)  # the mixed load is flowing before the first measured record
            producer.start()
            while producer.is_alive():
                reader.poll(0.05)
            producer.join()
            report = box["report"]
            if background:
                load.join()

            def alive() -> None:
                worker.process.raise_if_exited()
                reader.poll(0.05)

            wait_caught_up(settings, settings.topics.consumed, timeout=300, alive=alive)
            reader.read_to_end()
            answers = reader.records[skip:]
        with TopicReader(settings, [inputs_topic]) as inputs:
            sent = {(r.partition, r.offset): r.timestamp_ms for r in inputs.read_to_end()}
    finally:
        worker.stop()
    lat_ms = []
    nbr: dict[str, int] = {}
    for a in answers:
        body = loads(a.value or b"{}")
        src = body.get("source") or body.get("ext", {}).get("source")
        lat_ms.append(a.received_s * 1000 - sent[(src["partition"], src["offset"])])
        if "nbr" in body:
            nbr[str(body["nbr"])] = nbr.get(str(body["nbr"]), 0) + 1
    return {
        "events": len(records),
        "answers": len(answers),
        "rate_per_s": rate,
        "achieved_rate_per_s": len(records) / report.elapsed_s,
        "p50_ms": pct(lat_ms, 50),
        "p99_ms": pct(lat_ms, 99),
        "max_ms": max(lat_ms) if lat_ms else float("nan"),
        "mean_ms": statistics.fmean(lat_ms) if lat_ms else float("nan"),
        "no_bids_by_nbr": nbr,
        "mixed_load": {
            "events": len(background),
            "rate_per_s": background_rate,
            "by_topic": dict(Counter(r.topic for r in background)),
        },
    }


def run_chat(
    stack: LocalStack, settings: Settings, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    factory = EventFactory(11)
    chats = [factory.chat() for _ in range(args.chats)]
    batches = backlog_batches(settings, chats)
    results["chat_texts"] = length_profile(settings, batches)
    print(f"chat texts: {results['chat_texts']}", flush=True)
    print("raw Triton on the same texts and batches (bare aio client, 1 and 2 in flight)...", flush=True)
    results["raw"] = {
        "inflight_1": asyncio.run(raw_triton(settings, batches, 1)),
        "inflight_2": asyncio.run(raw_triton(settings, batches, 2)),
    }
    print(f"  {results['raw']}", flush=True)
    print(f"chat path throughput ({args.chats} messages, backlog drain)...", flush=True)
    results["chat_throughput"] = chat_throughput(stack, chats)
    print(f"  {results['chat_throughput']}", flush=True)
    results["chat_vs_raw_same_batches"] = (
        results["chat_throughput"]["messages_per_s"] / results["raw"]["inflight_1"]["texts_per_s"]
    )
    results["chat_vs_raw_2_inflight"] = (
        results["chat_throughput"]["messages_per_s"] / results["raw"]["inflight_2"]["texts_per_s"]
    )
    chat_rate = args.chat_rate or round(results["chat_throughput"]["messages_per_s"] / 2, 1)
    factory = EventFactory(12)
    print(f"chat latency at {chat_rate}/s...", flush=True)
    results["chat_latency"] = latency(
        stack,
        [factory.chat() for _ in range(max(50, int(chat_rate * 20)))],
        chat_rate,
        "cs-replies",
        [factory.chat() for _ in range(16)],
    )
    print(f"  {results['chat_latency']}", flush=True)


def run_bids(stack: LocalStack, args: argparse.Namespace, results: dict[str, Any]) -> None:
    factory = EventFactory(12)
    first_orders = dict(reversed(instacart_orders()))  # one (the first) order per user
    picked = list(first_orders.items())[:240]
    users = [f"u{u}" for u, _ in picked]
    history = [e for u, items in picked for e in factory.session(u, items)]
    # users who bid only in the warm-ups, so that those leave the measured users' caps alone
    warm_alone = [factory.bid_request(user_id=u, tmax=100) for u in users[200:220]]
    # the mixed run warms the text paths too: a fresh worker's first chat embeds the reply
    # catalogue and its first text batches are slow (measured: one 2 s stall of every path)
    text_warmup = list(itertools.islice(EventFactory(15).stream(("chat", "social")), 32))
    warm_mixed = [factory.bid_request(user_id=u, tmax=100) for u in users[220:]] + text_warmup
    users = users[:200]
    for name, warm, mixed_rate in (
        ("bid_latency", warm_alone, 0.0),
        ("bid_latency_mixed", warm_mixed, args.mixed_rate),
    ):
        seconds = args.bids / args.bid_rate + 3
        load = list(
            itertools.islice(
                EventFactory(14).stream(("clickstream", "chat", "social")), int(mixed_rate * seconds)
            )
        )
        print(
            f"bid latency at {args.bid_rate}/s ({args.bids} requests, tmax 100 ms), mixed load {mixed_rate}/s...",
            flush=True,
        )
        results[name] = latency(
            stack,
            [factory.bid_request(user_id=users[i % len(users)], tmax=100) for i in range(args.bids)],
            args.bid_rate,
            "ad-bids",
            history + warm,
            background=load,
            background_rate=mixed_rate,
        )
        print(f"  {results[name]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chats", type=int, default=600)
    parser.add_argument(
        "--chat-rate", type=float, default=0.0, help="latency run rate; 0 = half the measured throughput"
    )
    parser.add_argument("--clicks", type=int, default=6000)
    parser.add_argument("--bids", type=int, default=2000)
    parser.add_argument("--bid-rate", type=float, default=200.0)
    parser.add_argument(
        "--mixed-rate",
        type=float,
        default=85.0,
        help="clickstream+chat+social events/s during the mixed bid run",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--parts", default="chat,clicks,bids", help="which of chat,clicks,bids to run")
    args = parser.parse_args(argv)

    parts = set(args.parts.split(","))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
        "args": vars(args) | {"out": str(args.out)},
    }
    with running_stack(progress=lambda m: print(f"stack: {m}", flush=True)) as stack:
        settings = stack.settings()
        if "chat" in parts:
            run_chat(stack, settings, args, results)
        if "clicks" in parts:
            clicks_factory = EventFactory(13)
            clicks = [clicks_factory.click() for _ in range(args.clicks)]
            print(
                f"clickstream: raw passthrough and the worker ({args.clicks} clicks, backlog drain)...",
                flush=True,
            )
            results["click_passthrough"] = passthrough(stack, clicks)
            print(f"  {results['click_passthrough']}", flush=True)
            results["click_throughput"] = click_throughput(stack, clicks)
            print(f"  {results['click_throughput']}", flush=True)
            results["clicks_vs_passthrough"] = (
                results["click_throughput"]["clicks_per_s"] / results["click_passthrough"]["records_per_s"]
            )
        if "bids" in parts:
            run_bids(stack, args, results)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"pipeline-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
