"""The worker's /health, /ready and /metrics on the real stack (Kafka, Triton, a worker process):
its counters after a known event set equal what the inputs call for, the Grafana dashboard names
only metrics the worker and Triton really export, and a real Prometheus scrapes both."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from producers.events import EventFactory, Produced, bad_records, request_id_of
from producers.kafka import produce
from stack.local import STATE_DIR, LocalStack, PrometheusProcess, WorkerProcess
from stack.observe import TopicReader, wait_caught_up
from streams.pacing import cost_micros
from streams.topics import INPUTS
from tests.integration.conftest import Scorer
from tests.integration.oracle import ExpectedBid, banner_bid, cs_reply, recommend
from tests.unit.test_metrics_dashboard import dashboard_metric_names, exported_names, unknown_names
from tests.unit.test_serde import EXPECTED_REASON

pytestmark = pytest.mark.integration

START_S = 120.0
CATCH_UP_S = 120.0
SETTLE_S = 30.0  # the lag and spend gauges are measured every 5 s
CHATS = ("Hello there", "I want a refund, this is the worst!!!", "Can I talk to a real person please?")
ROUTES = {"clickstream": "clickstream", "chat": "chat", "social": "social", "bids": "bid-requests"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def http_get(url: str) -> tuple[int, bytes]:
    """Status and body, a 503 included; raises OSError when nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(url: str) -> tuple[str, Samples]:
    status, body = http_get(url)
    assert status == 200, (url, status)
    text = body.decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def series(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The samples of `name` by the values of the labels `keys`."""
    return {tuple(dict(labels)[k] for k in keys): v for (n, labels), v in samples.items() if n == name}


def wait_ready(worker: WorkerProcess, timeout: float = START_S) -> dict:
    """Poll /ready until it answers 200; /health must answer all along once it answers at all."""
    deadline = time.monotonic() + timeout
    alive_seen = False
    while True:
        if not worker.running():
            raise AssertionError(f"the worker exited; its log:\n{worker.log()}")
        try:
            alive = http_get(f"{worker.metrics_url}/health")
            ready = http_get(f"{worker.metrics_url}/ready")
        except urllib.error.URLError:
            assert not alive_seen, "/health stopped answering while the worker started"
        else:
            alive_seen = True
            assert alive[0] == 200, alive
            if ready[0] == 200:
                return dict(orjson.loads(ready[1]))
            assert ready[0] == 503 and orjson.loads(ready[1])["missing"], ready
        if time.monotonic() > deadline:
            raise AssertionError(f"/ready did not answer 200 within {timeout:.0f}s; log:\n{worker.log()}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def scorer(local_stack: LocalStack) -> Iterator[Scorer]:
    """One worker for the module: the tests read what one known event set left in its metrics."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings = local_stack.settings(topic_prefix=prefix, batch_within_s=0.02)
    local_stack.create_topics(settings)
    worker = WorkerProcess(settings, STATE_DIR / "test-workers" / f"{prefix}worker.log")
    worker.start()
    try:
        yield Scorer(local_stack, settings, worker)
    finally:
        worker.stop()


@dataclass(frozen=True)
class Traffic:
    """The known event set, and what it must leave in the worker's metrics."""

    records: list[Produced]
    bid: ExpectedBid | None  # what the user with a history gets, from the formula
    nbr_2: int  # dead-lettered bid requests that name their id: answered with nbr 2
    replies: Counter[tuple[str, str, str]]  # (action, intent, queue), from the served encoder
    segment_updates: list[dict]  # as read back from Kafka


def test_ready_once_it_owns_its_partitions_with_the_models(scorer: Scorer) -> None:
    state = wait_ready(scorer.worker)
    consumed = len(scorer.settings.topics.consumed) * scorer.settings.partitions
    assert state == {"ready": True, "missing": [], "assigned_partitions": consumed, "models_ready": True}


@pytest.fixture(scope="module")
def traffic(scorer: Scorer) -> Traffic:
    settings, topics = scorer.settings, scorer.settings.topics
    wait_ready(scorer.worker)
    factory = EventFactory(seed=47)
    clicks = factory.session("9001", [196, 14084, 12427])
    assert produce(settings, clicks).failed == 0  # first, so the bid request finds the history
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)
    chats = [factory.chat(user_id=f"u-chat{i}", text=text) for i, text in enumerate(CHATS)]
    posts = [factory.social(user_id=f"s{i}", text="love it", brand="freshcart") for i in range(2)]
    bids = [
        factory.bid_request(user_id="u9001", tmax=None),  # a history: the formula decides
        factory.bid_request(user_id="u-never-seen", tmax=2000),  # no history: nbr 8
        factory.bid_request(user_id="u-late", tmax=1),  # its 1 ms have passed: nbr 15
    ]
    bad = [r for t in INPUTS for r in bad_records(t, max_text_chars=settings.max_text_chars)]
    assert produce(settings, chats + posts + bids + bad).failed == 0
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)
    with TopicReader(settings, [topics.segment_updates]) as reader:
        updates = [orjson.loads(r.value or b"") for r in reader.read_to_end()]
    segments = next((u["segments"] for u in reversed(updates) if u["user_id"] == "u9001"), [])
    history = [e["product_id"] for e in map(orjson.loads, (c.value for c in clicks)) if "product_id" in e]
    items, scores = recommend(settings.triton_grpc_url, history, settings.recent_items)
    replies: Counter[tuple[str, str, str]] = Counter()
    for text in CHATS:
        want = cs_reply(settings.triton_grpc_url, text, [])  # the chat users have no profile
        replies[want.action, want.intent, want.handoff_queue or "none"] += 1
    return Traffic(
        records=clicks + chats + posts + bids + bad,
        bid=banner_bid(items, scores, segments, w=300, h=250, floor=0.05),
        nbr_2=sum(1 for r in bad if r.topic == "bid-requests" and request_id_of(r.value)),
        replies=replies,
        segment_updates=updates,
    )


def settled(scorer: Scorer, traffic: Traffic) -> Samples:
    """A scrape once the measured gauges show the caught-up state: every partition's lag 0 and
    the bid's cost reserved (no exchange sends its billing notice here, so nothing is spent; the
    gauges are refreshed every 5 s)."""
    cost = cost_micros(traffic.bid.price) / 1_000_000 if traffic.bid else 0.0
    partitions = len(scorer.settings.topics.consumed) * scorer.settings.partitions
    deadline = time.monotonic() + SETTLE_S
    while True:
        _, samples = scrape(f"{scorer.worker.metrics_url}/metrics")
        lag = series(samples, "kafka_consumergroup_lag", "consumergroup", "topic", "partition")
        spent = series(samples, "marketing_scorer_campaign_spend", "campaign")
        reserved = series(samples, "marketing_scorer_campaign_reserved", "campaign")
        booked = traffic.bid is None or (
            reserved.get((traffic.bid.campaign,)) == pytest.approx(cost)
            and spent.get((traffic.bid.campaign,)) == 0.0
        )
        if len(lag) == partitions and not any(lag.values()) and booked:
            assert {k[0] for k in lag} == {scorer.settings.faust_app_id}
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {SETTLE_S:.0f}s: lag {lag}, spend {spent}, reserved {reserved}, expected {traffic.bid}"
            )
        time.sleep(0.5)


def test_counters_equal_what_the_inputs_call_for(scorer: Scorer, traffic: Traffic) -> None:
    topics = scorer.settings.topics
    samples = settled(scorer, traffic)
    sent = Counter(topics.name(r.topic) for r in traffic.records)
    sent[topics.social_scored] = sum(1 for r in traffic.records if r.topic == "social" and r.kind == "valid")
    assert series(samples, "marketing_scorer_messages_received_per_topic_total", "topic") == {
        (topic,): n for topic, n in sent.items()
    }

    dead = Counter(
        (topics.name(r.topic), str(EXPECTED_REASON[r.kind] or "oversized"))
        for r in traffic.records
        if r.kind != "valid"
    )
    assert series(samples, "marketing_scorer_dead_letters_total", "topic", "reason") == dict(dead)

    no_bids = {("8",): 1.0, ("15",): 1.0, ("2",): float(traffic.nbr_2)}
    if traffic.bid is None:
        no_bids["501",] = 1.0  # every price under the floor
    assert series(samples, "marketing_scorer_no_bids_total", "nbr") == no_bids
    assert series(samples, "marketing_scorer_bids_total") == {(): 1.0 if traffic.bid else 0.0}

    assert series(samples, "marketing_scorer_cs_replies_total", "action", "intent", "queue") == dict(
        traffic.replies
    )

    out = series(samples, "marketing_scorer_topic_messages_sent_total", "topic")
    assert out[topics.cs_replies,] == len(CHATS)
    assert out[topics.ad_bids,] == 3 + traffic.nbr_2
    assert out[topics.social_scored,] == 2
    assert out[topics.segment_updates,] == len(traffic.segment_updates)
    for base in INPUTS:
        assert out[topics.dlq(topics.name(base)),] == sum(
            1 for r in traffic.records if r.topic == base and r.kind != "valid"
        )
    entered = Counter(s for u in traffic.segment_updates for s in u["entered"])
    assert series(samples, "marketing_scorer_segment_entries_total", "segment") == {
        (s,): n for s, n in entered.items()
    }

    # every record an agent took was in exactly one batch of its route
    sizes = series(samples, "marketing_scorer_batch_size_sum", "route")
    for route, base in {**ROUTES, "brands": "social-scored"}.items():
        assert sizes[route,] == sent[topics.name(base)], route
    codes = series(samples, "marketing_scorer_triton_requests_total", "model", "code")
    assert {code for _, code in codes} == {"OK"} and {m for m, _ in codes} == {"text_encoder", "recommender"}
    assert series(samples, "marketing_scorer_ready") == {(): 1.0}
    assert series(samples, "marketing_scorer_liveness_checks_total", "result").get(("ok",), 0) > 0
    assert series(samples, "marketing_scorer_worker_stops_total", "reason") == {}


def test_every_dashboard_query_names_a_metric_the_worker_or_triton_exports(
    scorer: Scorer, traffic: Traffic
) -> None:
    worker, _ = scrape(f"{scorer.worker.metrics_url}/metrics")
    triton, _ = scrape(scorer.stack.triton.metrics_url)
    used = dashboard_metric_names()
    assert {n for n in used if n.startswith("nv_")}, "the dashboard shows none of Triton's own metrics"
    assert unknown_names(used, exported_names(worker) | exported_names(triton)) == set()


def test_a_real_prometheus_scrapes_the_worker_and_triton_with_the_alert_rules(
    scorer: Scorer, traffic: Traffic
) -> None:
    prometheus = PrometheusProcess(
        [f"127.0.0.1:{scorer.worker.metrics_port}"],
        f"127.0.0.1:{scorer.stack.triton.metrics_port}",
        state_dir=STATE_DIR / "test-prometheus",
        scrape_interval_s=1.0,
    )
    prometheus.start()
    try:
        deadline = time.monotonic() + SETTLE_S
        while True:
            targets = prometheus.api("targets")["activeTargets"]  # type: ignore[index]
            health = {t["labels"]["job"]: t["health"] for t in targets}
            if health == {"marketing-scorer": "up", "triton": "up", "prometheus": "up"}:
                break
            assert time.monotonic() < deadline, f"targets not all up after {SETTLE_S:.0f}s: {targets}"
            time.sleep(0.5)
        [group] = prometheus.api("rules")["groups"]  # type: ignore[index]
        assert group["name"] == "marketing-scorer" and len(group["rules"]) == 8
        query = urllib.parse.quote('sum(marketing_scorer_cs_replies_total{job="marketing-scorer"})')
        [result] = prometheus.api(f"query?query={query}")["result"]  # type: ignore[index]
        assert float(result["value"][1]) == len(CHATS)
    except BaseException:
        print(f"--- prometheus log ---\n{prometheus.log()}")
        raise
    finally:
        prometheus.stop()
