"""Pipeline benchmark: the chat and bid paths through real Kafka, a real worker and real Triton,
next to a bare Triton client on the same models at the same batch size, in the same run.

    .venv/bin/python -m bench.run [--chats 600] [--bids 600] [--bid-rate 100] [--out bench/results]

What is measured (all in one process, one stack, one machine state):
- raw: a bare `tritonclient.grpc.aio` client sending batches of 32 real chat texts (tokenised as
  the worker does) with 2 requests in flight; texts/s. Same for the recommender with 32 histories.
- chat throughput: N chat messages are produced first, then a worker is started; throughput is
  N over the span between the first and last reply's Kafka timestamps (backlog drain).
- chat and bid latency: a fresh worker, already assigned and warmed up (16 chats; for bids the
  users' purchase histories and 20 bid requests from other users), receives events at a fixed
  rate from a producer that is already connected; latency = when this process consumed the
  result - the input record's Kafka timestamp (set when the record is handed to the producer).
The ratio pipeline/raw is the figure of merit; absolute numbers depend on the machine, which is
recorded with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from producers.corpus import CHAT_MESSAGES
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


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


async def raw_triton(settings: Settings, seconds: float = 15.0) -> dict[str, float]:
    """Texts/s and histories/s of a bare aio client at batch 32, 2 requests in flight."""
    from tritonclient.grpc import InferInput, InferRequestedOutput
    from tritonclient.grpc.aio import InferenceServerClient

    tok = TextTokenizer(settings.tokenizer_path, settings.max_seq_len)
    texts = [CHAT_MESSAGES[i % len(CHAT_MESSAGES)] for i in range(BATCH)]
    batch = tok.encode(texts)
    histories = np.zeros((BATCH, settings.recent_items), dtype=np.int64)
    for row, (_, items) in enumerate(instacart_orders()[:BATCH]):
        tail = items[-settings.recent_items :]
        histories[row, settings.recent_items - len(tail) :] = tail
    client = InferenceServerClient(url=settings.triton_grpc_url)

    def text_inputs() -> list[InferInput]:
        a = InferInput("input_ids", list(batch.input_ids.shape), "INT64")
        a.set_data_from_numpy(batch.input_ids)
        b = InferInput("attention_mask", list(batch.attention_mask.shape), "INT64")
        b.set_data_from_numpy(batch.attention_mask)
        return [a, b]

    def rec_inputs() -> list[InferInput]:
        a = InferInput("item_ids", list(histories.shape), "INT64")
        a.set_data_from_numpy(histories)
        return [a]

    async def run(model: str, make: Any, outputs: list[str]) -> float:
        requested = [InferRequestedOutput(o) for o in outputs]
        await client.infer(model, make(), outputs=requested)  # warm-up
        done = 0
        stop = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < stop:
                await client.infer(model, make(), outputs=requested)
                done += BATCH

        start = time.monotonic()
        await asyncio.gather(loop(), loop())
        return done / (time.monotonic() - start)

    try:
        return {
            "text_encoder_texts_per_s": await run(
                "text_encoder", text_inputs, ["sentiment_probs", "intent_probs", "embedding"]
            ),
            "recommender_histories_per_s": await run("recommender", rec_inputs, ["top_items", "top_scores"]),
        }
    finally:
        await client.close()


def _worker(stack: LocalStack, prefix: str) -> tuple[Settings, WorkerProcess]:
    settings = stack.settings(topic_prefix=prefix)
    stack.create_topics(settings)
    worker = WorkerProcess(settings, STATE_DIR / "logs" / f"{prefix}worker.log")
    return settings, worker


def chat_throughput(stack: LocalStack, n: int) -> dict[str, float]:
    settings, worker = _worker(stack, f"bench-tp-{int(time.time())}-")
    factory = EventFactory(11)
    produce(settings, [factory.chat() for _ in range(n)])  # backlog first, then the worker drains it
    worker.start()
    try:
        wait_caught_up(settings, settings.topics.consumed, timeout=900, alive=worker.process.raise_if_exited)
        with TopicReader(settings, [settings.topics.cs_replies]) as reader:
            replies = reader.read_to_end()
    finally:
        worker.stop()
    stamps = sorted(r.timestamp_ms for r in replies)
    span = (stamps[-1] - stamps[0]) / 1000
    return {"messages": len(replies), "drain_s": span, "messages_per_s": (len(replies) - 1) / span}


def latency(
    stack: LocalStack, records: list[Produced], rate: float, answer_topic: str, warmup: list[Produced]
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
            producer.start()
            while producer.is_alive():
                reader.poll(0.05)
            producer.join()
            report = box["report"]

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
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chats", type=int, default=600)
    parser.add_argument(
        "--chat-rate", type=float, default=0.0, help="latency run rate; 0 = half the measured throughput"
    )
    parser.add_argument("--bids", type=int, default=600)
    parser.add_argument("--bid-rate", type=float, default=100.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    with running_stack(progress=lambda m: print(f"stack: {m}", flush=True)) as stack:
        settings = stack.settings()
        print("raw Triton throughput (bare aio client, batch 32, 2 in flight)...", flush=True)
        results["raw"] = asyncio.run(raw_triton(settings))
        print(f"  {results['raw']}", flush=True)
        print(f"chat path throughput ({args.chats} messages, backlog drain)...", flush=True)
        results["chat_throughput"] = chat_throughput(stack, args.chats)
        print(f"  {results['chat_throughput']}", flush=True)
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
        first_orders = dict(reversed(instacart_orders()))  # one (the first) order per user
        picked = list(first_orders.items())[:220]
        users = [f"u{u}" for u, _ in picked]
        history = [e for u, items in picked for e in factory.session(u, items)]
        # 20 users bid only in the warm-up, so that it leaves the measured users' caps alone
        warm_bids = [factory.bid_request(user_id=u, tmax=100) for u in users[200:]]
        users = users[:200]
        print(f"bid latency at {args.bid_rate}/s ({args.bids} requests, tmax 100 ms)...", flush=True)
        results["bid_latency"] = latency(
            stack,
            [factory.bid_request(user_id=users[i % len(users)], tmax=100) for i in range(args.bids)],
            args.bid_rate,
            "ad-bids",
            history + warm_bids,
        )
        print(f"  {results['bid_latency']}", flush=True)
    raw = results["raw"]["text_encoder_texts_per_s"]
    results["chat_vs_raw"] = results["chat_throughput"]["messages_per_s"] / raw
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"pipeline-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
