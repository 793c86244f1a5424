"""Fault tests, after Kafka's own system tests: a known set of inputs, faults injected while the
worker is busy, then the input set compared with the output set.

Every test produces bid requests (users with and without a purchase history) and chat messages
at a fixed rate from a background thread, injects its fault once outputs are flowing, and then
checks, over everything the worker wrote:
- lost: inputs with neither an output nor a dead letter. Must be zero.
- duplicates: outputs beyond the first per input (at-least-once allows them; counted, and each
  carries the same deterministic id, so consumers can drop them).
- order: per input key, the first answers appear in input order.
- what the README's fault table claims, asserted with bounds a regression breaks: which worker
  exits there were (a skip-guard or liveness exit is code 70, a SIGKILL -9), duplicates (none
  where no worker dies), no-bids past tmax, and how long catching up took.
- brand windows (the two-worker test also sends a replayed social feed): every window closed
  once per content, and every post counted in exactly one window.

Workers run under a small supervisor that restarts a worker that exits, as docker compose's
`restart: unless-stopped` does. Figures go to build/faults/<test>.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import orjson
import pytest
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from producers.events import EventFactory, Produced
from producers.kafka import DeliveryReport, produce
from stack.local import REPO, STATE_DIR, LocalStack, WorkerProcess
from stack.observe import TopicReader, wait_assigned, wait_caught_up
from stack.triton import TritonServer
from streams.settings import Settings

pytestmark = pytest.mark.integration

RESULTS = REPO / "build" / "faults"
USERS = 24
# Kafka's own system tests use 100k records; CI here has 2 cores for everything, so the default
# is smaller. MS_FAULT_BIDS=20000 runs a bigger set (chats are a tenth of the bids).
N_BIDS = int(os.environ.get("MS_FAULT_BIDS", "1200"))
N_CHATS = max(1, N_BIDS // 10)
RATE = 200.0  # inputs per second
CATCH_UP_S = 240.0
KILLED = -9  # a WorkerProcess's exit code after SIGKILL
# Bounds for the figures the README's fault table reports (runs measured 461-707 duplicates for
# 3 kills, 115-127 for one worker killed of two, catching up in 3-13 s). Before the rebalance
# fixes a SIGKILL run cost 9-15 guard exits, 500-2,389 duplicates and 54-152 s to catch up.
DUPLICATES_PER_KILL = 450  # ~200 inputs/s x (1 s commit interval + restart)
CAUGHT_UP_S = 45.0


@dataclass
class Supervisor:
    """Restarts any of its workers that exits; counts the exits it saw."""

    settings: Settings
    name: str
    count: int = 1
    workers: list[WorkerProcess] = field(default_factory=list)
    exits: list[int | None] = field(default_factory=list)
    kills: int = 0

    def __post_init__(self) -> None:
        for i in range(self.count):
            log = STATE_DIR / "test-workers" / f"{self.settings.topic_prefix}{self.name}-{i}.log"
            self.workers.append(WorkerProcess(self.settings, log, name=f"worker-{i}"))

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def tick(self) -> None:
        for w in self.workers:
            if not w.running():
                self.exits.append(w.stop())  # reaps it and gives its exit code
                w.start()

    def kill(self, i: int = 0) -> None:
        self.workers[i].kill()
        self.kills += 1

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path} ---\n{w.log()}" for w in self.workers)


@dataclass
class Workload:
    history: list[Produced]
    inputs: list[Produced]
    expected: dict[str, str]  # input id -> "bid" | "chat"
    key_of: dict[str, bytes]
    posts: int = 0  # social posts of a replayed brand feed among the inputs
    windows: int = 0  # ... and the brand windows they fill


FEED_WINDOWS, FEED_PER_WINDOW = 4, 5


def with_brand_feed(load: Workload, seed: int, window_s: int) -> Workload:
    """Interleave a replayed social feed (keyed by brand, its windows ended over a minute ago, so
    the last window of each brand is closed by the quiet-brand flush soon after it arrives)."""
    start = datetime.now(UTC) - timedelta(seconds=(FEED_WINDOWS + 2) * window_s)
    feed = EventFactory(seed).brand_feed(
        start=start, windows=FEED_WINDOWS, per_window=FEED_PER_WINDOW, window_s=window_s
    )
    step = max(1, len(load.inputs) // len(feed))
    inputs = list(load.inputs)
    for i, post in enumerate(feed):
        inputs.insert(min(len(inputs), i * (step + 1)), post)
    brands = {p.key for p in feed}
    return Workload(load.history, inputs, load.expected, load.key_of, len(feed), len(brands) * FEED_WINDOWS)


def workload(seed: int, tmax: int | None, chats: int = N_CHATS) -> Workload:
    factory = EventFactory(seed)
    t0 = datetime.now(UTC) - timedelta(days=1)
    history = []
    for u in range(USERS // 2):  # half the users have bought something: their bids are priced
        for i, pid in enumerate((24852, 13176, 21137)):
            body = {
                "schema_version": 1,
                "event_id": f"h{u}-{i}",
                "user_id": f"f{u}",
                "session_id": "s",
                "ts": (t0 + timedelta(minutes=i)).isoformat(),
                "type": "purchase",
                "product_id": pid,
                "price": 2.5,
            }
            history.append(Produced("clickstream", f"f{u}".encode(), orjson.dumps(body)))
    inputs: list[Produced] = []
    expected: dict[str, str] = {}
    key_of: dict[str, bytes] = {}
    per_chat = max(1, N_BIDS // chats)
    for n in range(N_BIDS):
        rec = factory.bid_request(user_id=f"f{n % USERS}", tmax=tmax)
        inputs.append(rec)
        rid = orjson.loads(rec.value)["id"]
        expected[rid], key_of[rid] = "bid", rec.key or b""
        if n % per_chat == 0 and n // per_chat < chats:
            chat = factory.chat(user_id=f"f{n % USERS}")
            inputs.append(chat)
            mid = orjson.loads(chat.value)["message_id"]
            expected[mid], key_of[mid] = "chat", chat.key or b""
    return Workload(history, inputs, expected, key_of)


@dataclass
class Outcome:
    figures: dict[str, object]
    answered: Counter[str]


def answer_id(topic: str, value: bytes, settings: Settings) -> tuple[str, str, str, int, int]:
    """(input id, output id, input topic, partition, offset) of one output record."""
    body = orjson.loads(value)
    if topic == settings.topics.ad_bids:
        src = body["ext"]["source"]
        return body["id"], body["ext"]["response_id"], src["topic"], src["partition"], src["offset"]
    src = body["source"]
    return body["in_reply_to"], body["reply_id"], src["topic"], src["partition"], src["offset"]


def check(
    name: str,
    settings: Settings,
    load: Workload,
    reader: TopicReader,
    supervisor: Supervisor,
    extra: dict[str, object],
) -> Outcome:
    topics = settings.topics
    if load.windows:  # the last windows close on the quiet-brand timer, after the inputs
        wait_windows(reader, topics.brand_sentiment, load.windows, timeout=90)
    reader.read_to_end(timeout=60)
    answered: Counter[str] = Counter()
    ids: defaultdict[str, set[str]] = defaultdict(set)
    first_seen: defaultdict[tuple[str, bytes], list[tuple[int, int]]] = defaultdict(list)
    for rec in reader.records:
        if rec.topic not in (topics.ad_bids, topics.cs_replies):
            continue
        input_id, output_id, source, partition, offset = answer_id(rec.topic, rec.value or b"", settings)
        if input_id not in answered:  # per input topic and key: the first answers in input order
            first_seen[source, load.key_of[input_id]].append((partition, offset))
        answered[input_id] += 1
        ids[input_id].add(output_id)
    expired = sum(
        1
        for r in reader.records
        if r.topic == topics.ad_bids and orjson.loads(r.value or b"{}").get("nbr") == 15
    )
    dead = [r for r in reader.records if r.topic in topics.dead_letters]
    lost = sorted(set(load.expected) - set(answered))
    duplicates = sum(n - 1 for n in answered.values())
    out_of_order = [key for key, seq in first_seen.items() if seq != sorted(seq)]
    figures: dict[str, object] = {
        "test": name,
        "inputs": len(load.expected),
        "bids": sum(1 for v in load.expected.values() if v == "bid"),
        "chats": sum(1 for v in load.expected.values() if v == "chat"),
        "answered": len(answered),
        "lost": len(lost),
        "duplicates": duplicates,
        "dead_letters": len(dead),
        "bids_past_tmax_nbr15": expired,
        "keys_out_of_order": len(out_of_order),
        "ids_per_input_max": max((len(v) for v in ids.values()), default=0),
        "worker_exits_restarted": supervisor.exits,
        **brand_figures(reader, topics.brand_sentiment, load),
        "workers_killed": supervisor.kills,
        "measured_on": "2 cores, loopback, the session's Kafka 4.1.1 and Triton 2.51 (CPU)",
        **extra,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    assert not lost, f"{len(lost)} inputs lost, e.g. {lost[:5]}; figures {figures}"
    assert not dead, f"valid inputs were dead-lettered: {[r.headers for r in dead[:3]]}"
    assert not out_of_order, f"per-key order broken for {out_of_order[:5]}"
    assert figures["ids_per_input_max"] == 1, "a redelivered input got a different output id"
    if load.windows:
        assert figures["brand_windows"] == load.windows, figures
        assert figures["brand_window_versions_max"] == 1, "a window was published with two contents"
        assert figures["brand_posts_counted"] == load.posts, "posts counted twice or not at all"
    return Outcome(figures, answered)


def wait_windows(reader: TopicReader, topic: str, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len({window_key(r.value) for r in reader.records if r.topic == topic}) < want:
        if time.monotonic() > deadline:
            got = len({window_key(r.value) for r in reader.records if r.topic == topic})
            raise AssertionError(f"{got} of {want} brand windows closed within {timeout:.0f}s")
        reader.poll(0.5)


def window_key(value: bytes | None) -> str:
    return str(orjson.loads(value or b"{}")["window_id"])


def brand_figures(reader: TopicReader, topic: str, load: Workload) -> dict[str, object]:
    """Windows by id, the distinct contents published under each id (a duplicate of a window is
    the same record again; a second content means a window was closed twice), and the posts the
    distinct windows counted."""
    if not load.windows:
        return {}
    contents: defaultdict[str, set[bytes]] = defaultdict(set)
    volume: dict[str, int] = {}
    for r in reader.records:
        if r.topic == topic:
            body = orjson.loads(r.value or b"{}")
            contents[body["window_id"]].add(r.value or b"")
            volume[body["window_id"]] = body["volume"]
    return {
        "brand_posts": load.posts,
        "brand_windows": len(contents),
        "brand_window_records": sum(1 for r in reader.records if r.topic == topic),
        "brand_window_versions_max": max((len(v) for v in contents.values()), default=0),
        "brand_posts_counted": sum(volume.values()),
    }


def assert_table_figures(
    figures: dict[str, object], *, kills: int, duplicates_max: int, nbr15: bool = False
) -> None:
    """What the README's fault table says of a run: the only worker exits are the test's own
    kills (a skip-guard or liveness exit is code 70), at most `duplicates_max` duplicates, no
    auction past tmax unless the fault takes the model away, and caught up quickly."""
    assert figures["worker_exits_restarted"] == [KILLED] * kills, (
        f"worker exits {figures['worker_exits_restarted']}: only the test's {kills} SIGKILLs were expected"
    )
    assert cast(int, figures["duplicates"]) <= duplicates_max, figures
    if not nbr15:
        assert figures["bids_past_tmax_nbr15"] == 0, figures
    assert cast(float, figures["caught_up_after_last_input_s"]) < CAUGHT_UP_S, figures


@pytest.fixture
def fault_settings(local_stack: LocalStack) -> Iterator[Settings]:
    prefix = f"f{uuid.uuid4().hex[:10]}-"
    settings = local_stack.settings(
        topic_prefix=prefix,
        batch_within_s=0.02,
        kafka_session_timeout_s=6.0,  # a killed worker's partitions move on after 6 s
        triton_retry_max_s=30.0,  # outlasts the 10 s Triton outage
        liveness_stall_s=40.0,  # a silently stopped consumer is restarted within a test's time
    )
    local_stack.create_topics(settings)
    yield settings


@dataclass
class Live:
    """What a fault injector sees while the workload runs: progress, and a way to keep polling."""

    progress: Counter[str]
    poll: Callable[[], None]
    figures: dict[str, object] = field(default_factory=dict)

    def wait_outputs(self, at_least: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.progress["outputs"] < at_least:
            self.poll()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {self.progress['outputs']} outputs within {timeout:.0f}s (wanted {at_least})"
                )

    def idle(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.poll()


def run_with_fault(
    name: str, settings: Settings, supervisor: Supervisor, load: Workload, inject: Callable[[Live], None]
) -> Outcome:
    """Produce the workload at RATE while `inject` runs its faults, then compare the sets."""
    topics = settings.topics
    supervisor.start()
    try:
        wait_assigned(settings, topics.consumed, timeout=120, alive=supervisor.tick)
        assert produce(settings, load.history).failed == 0
        wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=supervisor.tick)
        box: dict[str, DeliveryReport] = {}
        producer = threading.Thread(
            target=lambda: box.update(report=produce(settings, load.inputs, rate=RATE, flush_timeout_s=300)),
            name="fault-producer",
        )
        read = [topics.ad_bids, topics.cs_replies, topics.brand_sentiment, *topics.dead_letters]
        with TopicReader(settings, read) as reader:
            progress: Counter[str] = Counter()

            def poll() -> None:
                supervisor.tick()
                got = reader.poll(0.1)
                progress["outputs"] += sum(1 for r in got if r.topic != topics.brand_sentiment)

            live = Live(progress, poll)
            started = time.monotonic()
            producer.start()
            inject(live)
            while producer.is_alive():
                poll()
            producer.join()
            assert box["report"].failed == 0, box["report"].summary()
            recovered = wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=supervisor.tick)
            timing = {
                "seconds": round(time.monotonic() - started, 1),
                "caught_up_after_last_input_s": round(recovered, 1),
            }
            return check(name, settings, load, reader, supervisor, {**timing, **live.figures})
    except BaseException:
        print(supervisor.logs())
        raise
    finally:
        supervisor.stop()


def test_worker_killed_three_times_loses_nothing(fault_settings: Settings) -> None:
    supervisor = Supervisor(fault_settings, "kill")
    load = workload(seed=11, tmax=None)

    def inject(live: Live) -> None:
        for step in (1, 2, 3):
            live.wait_outputs(step * len(load.expected) // 5)
            supervisor.kill()  # SIGKILL: no shutdown, no commit
            supervisor.tick()  # restarted at once, as a supervisor would

    outcome = run_with_fault("worker_sigkill_x3", fault_settings, supervisor, load, inject)
    assert_table_figures(outcome.figures, kills=3, duplicates_max=3 * DUPLICATES_PER_KILL)


def test_two_workers_one_killed_the_other_takes_over(fault_settings: Settings) -> None:
    """Also brand windows: the killed worker's brands move to the survivor, which also holds
    standby copies of the other partitions' tables (Faust's default standby replica)."""
    supervisor = Supervisor(fault_settings, "pair", count=2)
    load = with_brand_feed(workload(seed=12, tmax=None), 12, fault_settings.brand_window_s)

    def inject(live: Live) -> None:
        live.wait_outputs(len(load.expected) // 4)
        supervisor.kill(1)
        supervisor.workers.pop()  # not restarted: worker 0 must take the partitions over

    outcome = run_with_fault("two_workers_one_sigkill", fault_settings, supervisor, load, inject)
    # the killed worker is not restarted, so it is not among the exits
    assert_table_figures(outcome.figures, kills=0, duplicates_max=DUPLICATES_PER_KILL)


def test_broker_restart_loses_nothing(fault_settings: Settings, local_stack: LocalStack) -> None:
    supervisor = Supervisor(fault_settings, "broker")
    load = workload(seed=13, tmax=None)

    def inject(live: Live) -> None:
        live.wait_outputs(len(load.expected) // 4)
        t = time.monotonic()
        local_stack.kafka.stop()
        local_stack.kafka.start()
        live.figures["broker_down_s"] = round(time.monotonic() - t, 1)

    outcome = run_with_fault("broker_restart", fault_settings, supervisor, load, inject)
    assert_table_figures(outcome.figures, kills=0, duplicates_max=0)


def test_triton_outage_is_retried_and_nothing_is_lost(
    fault_settings: Settings, local_stack: LocalStack
) -> None:
    supervisor = Supervisor(fault_settings, "triton")
    load = workload(seed=14, tmax=1000)

    def inject(live: Live) -> None:
        live.wait_outputs(len(load.expected) // 4)
        t = time.monotonic()
        local_stack.triton.stop()
        live.idle(10)  # ~10 s without Triton while inputs keep arriving
        local_stack.triton.start()
        live.figures["triton_down_s"] = round(time.monotonic() - t, 1)

    outcome = run_with_fault("triton_outage_10s", fault_settings, supervisor, load, inject)
    # a 10 s outage is inside the retry budget: no exit, nothing processed twice
    assert_table_figures(outcome.figures, kills=0, duplicates_max=0, nbr15=True)


QUEUE = 4  # the overloaded Triton's max_queue_size (the shipped configs: 1024)


def absolute_onnx_paths(config: str, folder: Path) -> str:
    """The configs name their ONNX file relative to the model's version folder."""

    def absolute(match: re.Match[str]) -> str:
        return f'string_value: "{(folder / match.group(1)).resolve()}"'

    return re.sub(r'string_value: "([^"/][^"]*\.onnx)"', absolute, config)


def overloaded_triton(local_stack: LocalStack, home: Path) -> TritonServer:
    """The session's model repository with a small queue, served by a second Triton."""
    repo = home / "models"
    source = local_stack.triton.repository
    shutil.copytree(source, repo, ignore=shutil.ignore_patterns("__pycache__"))
    for config in repo.glob("*/config.pbtxt"):
        text = config.read_text()
        patched = re.sub(r"max_queue_size: \d+", f"max_queue_size: {QUEUE}", text)
        patched = absolute_onnx_paths(patched, source / config.parent.name / "1")
        assert patched.count(f"max_queue_size: {QUEUE}") == 1, config
        config.write_text(patched)
    return TritonServer(repo, home, http_port=0, grpc_port=0, metrics_port=0)


@dataclass
class Neighbour:
    """Another tenant of the same Triton: keeps `concurrency` requests of 16 texts in flight on
    the text encoder, so its queue stays full and the worker's requests are turned away."""

    url: str
    concurrency: int = 8
    served: int = 0
    rejected: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="neighbour")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            assert not self._thread.is_alive(), "the neighbour's requests did not finish in 120 s"

    async def _run(self) -> None:
        rng = np.random.default_rng(3)
        ids = rng.integers(1000, 20000, size=(16, 64), dtype=np.int64)
        inputs = []
        for name, array in (("input_ids", ids), ("attention_mask", np.ones_like(ids))):
            tensor = InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        client = InferenceServerClient(self.url)

        async def loop() -> None:
            while not self._stop.is_set():
                try:
                    await client.infer("text_encoder", inputs, client_timeout=60)
                    self.served += 1
                except InferenceServerException:
                    self.rejected += 1
                    await asyncio.sleep(0.005)

        try:
            await asyncio.gather(*(loop() for _ in range(self.concurrency)))
        finally:
            await client.close()


@dataclass
class RssPeak:
    """Samples the resident memory of the supervisor's first worker every 0.2 s."""

    supervisor: Supervisor
    peak_kib: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            pid = self.supervisor.workers[0].process.pid
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except (OSError, TypeError):  # between a worker's exit and its restart
                continue
            match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
            if match:
                self.peak_kib = max(self.peak_kib, int(match.group(1)))
                self.samples += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_triton_overload_is_back_pressure_and_nothing_is_lost(
    fault_settings: Settings, local_stack: LocalStack, tmp_path: Path
) -> None:
    """A second Triton with a queue of 4, flooded by another tenant while a burst of chats and
    bids arrives: the worker's requests are turned away (queue full) and retried with backoff,
    auctions past their tmax are answered nbr=15, the worker holds at most
    `stream_buffer_maxsize` records per input topic (the rest wait in Kafka), and nothing is
    lost once the flood stops."""
    triton = overloaded_triton(local_stack, tmp_path)
    triton.start()
    neighbour = Neighbour(triton.grpc_url)
    try:
        settings = fault_settings.model_copy(
            update={"triton_grpc_url": triton.grpc_url, "stream_buffer_maxsize": 64}
        )
        supervisor = Supervisor(settings, "overload")
        load = workload(seed=15, tmax=100, chats=N_CHATS * 4)
        rss = RssPeak(supervisor)

        def inject(live: Live) -> None:
            live.wait_outputs(1)  # the worker is warm and answering
            live.figures["worker_rss_before_mib"] = round(rss.peak_kib / 1024)
            neighbour.start()
            live.idle(20)  # the flood outlasts production (about 8 s)
            neighbour.stop()
            live.figures["worker_rss_peak_mib"] = round(rss.peak_kib / 1024)
            live.figures["neighbour_served"] = neighbour.served
            live.figures["neighbour_rejected"] = neighbour.rejected

        rss.start()
        try:
            outcome = run_with_fault("triton_overload", settings, supervisor, load, inject)
        finally:
            rss.stop()
    finally:
        neighbour.stop()
        triton.stop()
    log = supervisor.workers[0].log_path.read_text(errors="replace")
    turned_away = len(re.findall(r"text_encoder attempt \d+ failed \((UNAVAILABLE|RESOURCE_EXHAUSTED)", log))
    figures = outcome.figures
    print(json.dumps({"worker_requests_turned_away": turned_away}))
    assert figures["neighbour_rejected"], "the flood never filled Triton's queue: not an overload"
    assert turned_away, "the worker was never turned away: not an overload"
    assert figures["worker_exits_restarted"] == [], "an overload inside the retry budget is not a crash"
    assert_table_figures(figures, kills=0, duplicates_max=0, nbr15=True)
    growth = cast(int, figures["worker_rss_peak_mib"]) - cast(int, figures["worker_rss_before_mib"])
    assert growth < 200, f"worker memory grew by {growth} MiB under overload"
