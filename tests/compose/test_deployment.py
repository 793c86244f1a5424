"""The compose deployment run for real: a worker in a container answers through Kafka and Triton in
containers, and rides out the faults a deployment sees.

- The producer container sends a known event set (plus one of each bad record per topic); every
  input is answered on its output topic, naming it as `source`, in the output's schema, under the
  right key, and every bad record is dead-lettered with its bytes, reason and position.
- Faults while records flow, each checked over the whole input set as the local stack's fault
  suite does (tests/integration/test_faults.py, whose workload and bookkeeping are reused):
  lost (must be 0), duplicates (counted and reported), nbr 15 no-bids, restarts.
  - the worker SIGKILLed as a crash: the restart policy brings it back; then by `docker compose
    kill -s SIGKILL`, which the engine treats as an operator's stop (it never restarts a
    container it killed itself), so it is started again as an operator would;
  - `up --scale worker=2`: both replicas share the partitions, every input answered;
  - Triton stopped and started: the worker retries, answers late auctions with nbr 15.
Figures go to build/compose/<test>.json.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient

from producers.events import MIX, bad_records, request_id_of
from producers.kafka import DeliveryReport, produce
from stack.observe import Consumed, TopicReader, end_offsets, wait_assigned, wait_caught_up
from streams.dlq import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from streams.schemas import BidResponse, CsReply, SegmentUpdate
from streams.schemas.outputs import ScoredPost
from streams.settings import Settings
from tests.compose.deployment import Deployment, results_dir
from tests.integration.test_faults import Live, Workload, answer_id, workload
from tests.unit.test_serde import EXPECTED_REASON

COUNT = 400  # valid events the producer container sends
RATE = 200.0  # inputs per second in the fault tests
CATCH_UP_S = 240.0
Position = tuple[str, int, int]  # topic, partition, offset


def save(name: str, figures: dict[str, Any]) -> None:
    (results_dir() / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


def input_ends(settings: Settings) -> dict[tuple[str, int], int]:
    """Where each input partition ends now: what a test produces comes after."""
    consumer = Consumer(settings.confluent_config(**{"group.id": f"ends-{uuid.uuid4()}"}))
    try:
        meta = consumer.list_topics(timeout=10)
        tps = [TopicPartition(t, p) for t in settings.topics.inputs for p in meta.topics[t].partitions]
        return end_offsets(consumer, tps)
    finally:
        consumer.close()


def source_of(body: dict[str, Any]) -> Position:
    src = body["source"]
    return src["topic"], src["partition"], src["offset"]


def dead_letter_of(record: Consumed) -> Position:
    """The input a dead letter names in its headers."""
    h = record.headers
    return h[HEADER_TOPIC].decode(), int(h[HEADER_PARTITION]), int(h[HEADER_OFFSET])


def test_producer_container_every_input_answered_every_bad_record_dead_lettered(
    deployment: Deployment,
) -> None:
    settings, topics = deployment.settings(), deployment.settings().topics
    wait_assigned(settings, topics.consumed, timeout=120)
    start = input_ends(settings)
    bad_kinds = {t: [r.kind for r in bad_records(t)] for t in MIX}
    done = deployment.compose(
        *("run", "--rm", "producer", "python", "-m", "producers", "--count", str(COUNT)),
        *("--rate", "0", "--bad", "--no-progress", "--seed", "21"),
        timeout=300,
    )
    sent = COUNT + sum(len(k) for k in bad_kinds.values())
    assert f"delivered {sent} records" in done.stdout + done.stderr, done.stderr[-2000:]
    caught_up = wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S)

    read = [*topics.inputs, topics.social_scored, *topics.outputs, *topics.dead_letters]
    with TopicReader(settings, read) as reader:
        reader.read_to_end()
    inputs = [
        r for r in reader.records if r.topic in topics.inputs and r.offset >= start[r.topic, r.partition]
    ]
    assert len(inputs) == sent
    position = {(r.topic, r.partition, r.offset): r for r in inputs}
    valid = {p: r for p, r in position.items() if r.key != b"bad-key"}
    bad = {p: r for p, r in position.items() if r.key == b"bad-key"}
    by_topic = Counter(p[0] for p in valid)
    # the event mix reaches its four topics (ad-events is the gateway's, not the producers')
    assert set(by_topic) == {topics.name(t) for t in MIX}, by_topic

    def answers(topic: str) -> dict[Position, list[tuple[Consumed, dict[str, Any]]]]:
        found: defaultdict[Position, list[tuple[Consumed, dict[str, Any]]]] = defaultdict(list)
        for r in reader.by_topic(topic):
            body = orjson.loads(r.value or b"")
            src = source_of(body["ext"] if topic == topics.ad_bids else body)
            if src in position:
                found[src].append((r, body))
        return found

    # chat: one reply per message, in the CsReply schema, keyed by conversation
    replies = answers(topics.cs_replies)
    chats = {p: orjson.loads(r.value or b"") for p, r in valid.items() if p[0] == topics.chat}
    assert set(replies) == set(chats)
    for p, got in replies.items():
        [(record, body)] = got
        reply = CsReply.model_validate(body)
        assert (reply.in_reply_to, record.key) == (
            chats[p]["message_id"],
            chats[p]["conversation_id"].encode(),
        )

    # bid requests: one BidResponse each, keyed by user (else the request id); a bad request
    # that names its id gets its nbr-2 answer beside its dead letter
    bids = answers(topics.ad_bids)
    requests = {p: orjson.loads(r.value or b"") for p, r in valid.items() if p[0] == topics.bid_requests}
    named = {p: request_id_of(r.value) for p, r in bad.items() if p[0] == topics.bid_requests}
    named = {p: i for p, i in named.items() if i is not None}
    assert named, "the bad bid requests include one that names its id"
    assert set(bids) == set(requests) | set(named)
    for p, got in bids.items():
        [(record, body)] = got
        response = BidResponse.model_validate(body)
        if p in named:
            assert (response.id, response.nbr, response.seatbid) == (named[p], 2, []), body
            continue
        request = requests[p]
        assert response.id == request["id"]
        assert record.key == ((request.get("user") or {}).get("id") or request["id"]).encode()

    # social: every post scored once (the internal topic, keyed by brand) for its brand window
    scored = answers(topics.social_scored)
    posts = {p: orjson.loads(r.value or b"") for p, r in valid.items() if p[0] == topics.social}
    assert set(scored) == set(posts)
    for p, got in scored.items():
        [(record, body)] = got
        post = ScoredPost.model_validate(body)
        assert (post.post_id, record.key) == (posts[p]["post_id"], posts[p]["brand"].encode())

    # clickstream (and social): segment updates of this run name one of its events, keyed by the
    # user, with versions that go up by one per user
    updates = answers(topics.segment_updates)
    assert updates, "the sessions changed no user's segments"
    versions: defaultdict[str, list[tuple[int, str]]] = defaultdict(list)  # per user, in output order
    for p, got in sorted(updates.items(), key=lambda item: item[1][0][0].offset):
        assert p in valid and p[0] in (topics.clickstream, topics.social), p
        for record, body in got:
            update = SegmentUpdate.model_validate(body)
            assert record.key == update.user_id.encode()
            versions[update.user_id].append((update.version, f"{p[0]}[{p[1]}]@{p[2]}"))
    for user, seen in versions.items():
        numbers = [v for v, _ in seen]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (
            f"{user}'s segment versions do not go up by one (a profile update was lost): {seen}"
        )

    # dead letters: exactly the bad records, byte for byte, with their reasons and positions
    dead = [r for t in topics.dead_letters for r in reader.by_topic(t) if dead_letter_of(r) in position]
    named_by = {dead_letter_of(d): d for d in dead}
    assert len(named_by) == len(dead) and set(named_by) == set(bad), "one dead letter per bad record"
    for p, d in named_by.items():
        assert (d.topic, d.value, d.key) == (topics.dlq(p[0]), bad[p].value, b"bad-key")
    for topic, kinds in bad_kinds.items():
        want = sorted(reason.value if (reason := EXPECTED_REASON[k]) else "oversized" for k in kinds)
        reasons = sorted(d.headers[HEADER_REASON].decode() for p, d in named_by.items() if p[0] == topic)
        assert reasons == want, topic

    save(
        "producer_container",
        {
            "test": "producer_container",
            "inputs": len(inputs),
            "valid": dict(by_topic),
            "bad": len(bad),
            "cs_replies": len(replies),
            "ad_bids": len(bids),
            "nbr2_for_named_bad_requests": len(named),
            "social_scored": len(scored),
            "segment_updates": sum(len(v) for v in updates.values()),
            "dead_letters": len(dead),
            "caught_up_s": round(caught_up, 1),
        },
    )


def run_with_fault(
    name: str, deployment: Deployment, load: Workload, inject: Callable[[Live], None]
) -> dict[str, Any]:
    """Produce `load` from the host at RATE while `inject` runs its fault, then compare the sets:
    every input answered (zero lost), none dead-lettered, one output id per input."""
    settings, topics = deployment.settings(), deployment.settings().topics
    wait_assigned(settings, topics.consumed, timeout=120)
    assert produce(settings, load.history).failed == 0
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S)
    box: dict[str, DeliveryReport] = {}
    producer = threading.Thread(
        target=lambda: box.update(report=produce(settings, load.inputs, rate=RATE, flush_timeout_s=300)),
        name="compose-fault-producer",
    )
    with TopicReader(settings, [topics.ad_bids, topics.cs_replies, *topics.dead_letters]) as reader:
        progress: Counter[str] = Counter()

        def poll() -> None:
            progress["outputs"] += len(reader.poll(0.1))

        live = Live(progress, poll)
        started = time.monotonic()
        producer.start()
        try:
            inject(live)
        finally:
            producer.join()
        assert box["report"].failed == 0, box["report"].summary()
        caught_up = wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S)
        reader.read_to_end(timeout=60)
    answered: Counter[str] = Counter()
    ids: defaultdict[str, set[str]] = defaultdict(set)
    nbr15 = 0
    for rec in reader.records:
        if rec.topic not in (topics.ad_bids, topics.cs_replies):
            continue
        input_id, output_id, *_ = answer_id(rec.topic, rec.value or b"", settings)
        if input_id in load.expected:
            answered[input_id] += 1
            ids[input_id].add(output_id)
            nbr15 += orjson.loads(rec.value or b"").get("nbr") == 15
    sent = {r.value for r in load.inputs}
    dead = [r for r in reader.records if r.topic in topics.dead_letters and r.value in sent]
    lost = sorted(set(load.expected) - set(answered))
    figures: dict[str, Any] = {
        "test": name,
        "inputs": len(load.expected),
        "answered": len(answered),
        "lost": len(lost),
        "duplicates": sum(n - 1 for n in answered.values()),
        "dead_lettered": len(dead),
        "bids_nbr15": nbr15,
        "ids_per_input_max": max((len(v) for v in ids.values()), default=0),
        "seconds": round(time.monotonic() - started, 1),
        "caught_up_after_last_input_s": round(caught_up, 1),
        **live.figures,
    }
    save(name, figures)
    assert not lost, f"{len(lost)} inputs lost, e.g. {lost[:5]}; {figures}"
    assert not dead, f"valid inputs were dead-lettered: {[r.headers for r in dead[:3]]}"
    assert figures["ids_per_input_max"] == 1, "a redelivered input got a different output id"
    return figures


def post_bid(body: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST to the deployment's gateway (host networking: loopback, its default port)."""
    request = urllib.request.Request(
        "http://127.0.0.1:8080/openrtb2/bid", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_gateway_answers_an_exchange_over_http(deployment: Deployment) -> None:
    """The gateway service in front of the worker: a request for a user with no history is a
    no-bid (204), an invalid one a 400 naming its id with nbr 2; both say OpenRTB 2.6."""
    tag = uuid.uuid4().hex[:8]
    request = {
        "id": f"compose-{tag}",
        "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
        "user": {"id": f"nobody-{tag}"},
        "tmax": 2000,  # generous: this checks the path through the containers, not latency
    }
    status, headers, body = post_bid(orjson.dumps(request))
    assert (status, body) == (204, b""), body[:500]
    assert headers.get("x-openrtb-version") == "2.6"
    status, headers, body = post_bid(orjson.dumps({"id": f"bad-{tag}", "imp": "none"}))
    assert status == 400, body[:500]
    answer = orjson.loads(body)
    assert (answer["id"], answer["nbr"]) == (f"bad-{tag}", 2)
    assert headers.get("x-openrtb-version") == "2.6"


def test_worker_sigkilled_comes_back_and_nothing_is_lost(deployment: Deployment) -> None:
    load = workload(seed=31, tmax=None)
    before = deployment.restarts("worker")

    def inject(live: Live) -> None:
        live.wait_outputs(len(load.expected) // 4)
        t = time.monotonic()
        deployment.crash("worker")  # the process dies; the engine applies `restart: unless-stopped`
        deployment.wait_running("worker", restarts_above=before, timeout=60)
        live.figures["restart_policy_back_s"] = round(time.monotonic() - t, 1)
        live.wait_outputs(len(load.expected) // 2)
        restarted = deployment.restarts("worker")
        live.figures["restarts_by_policy"] = restarted - before
        deployment.compose("kill", "-s", "SIGKILL", "worker")
        state = deployment.wait_stopped("worker")
        assert state["ExitCode"] == 137, state
        assert deployment.restarts("worker") == restarted, "the engine restarts no container it killed"
        deployment.compose("start", "worker")  # so an operator starts it again (the count restarts at 0)
        deployment.wait_running("worker", timeout=60)

    figures = run_with_fault("worker_sigkill", deployment, load, inject)
    # exits the test did not cause are restarts too; their reasons are in the worker's log
    crashes = re.findall(r"Crashed reason=(\w+)", deployment.compose("logs", "--no-color", "worker").stdout)
    figures.update(kills=2, worker_crashes=crashes)
    save("worker_sigkill", figures)
    assert figures["restarts_by_policy"] >= 1, figures


def group_assignment(settings: Settings) -> dict[str, set[tuple[str, int]]] | None:
    """Input partitions per member of the worker group, once it is stable."""
    admin = AdminClient(settings.confluent_config())
    future = admin.describe_consumer_groups([settings.faust_app_id], request_timeout=10)[
        settings.faust_app_id
    ]
    group = future.result(timeout=15)
    if group.state != ConsumerGroupState.STABLE:
        return None
    return {
        m.member_id: {
            (tp.topic, tp.partition)
            for tp in (m.assignment.topic_partitions or [])
            if tp.topic in settings.topics.consumed
        }
        for m in group.members
    }


def test_two_workers_share_the_partitions_and_answer_everything(deployment: Deployment) -> None:
    settings = deployment.settings()
    load = workload(seed=32, tmax=None)
    deployment.up("worker", scale=2, no_deps=True)  # --wait: both replicas healthy
    try:
        deadline = time.monotonic() + 120
        while True:
            members = group_assignment(settings)
            if members and len(members) == 2 and all(members.values()):
                break
            assert time.monotonic() < deadline, f"two workers did not share the partitions: {members}"
            time.sleep(0.5)
        owned = set().union(*members.values())
        partitions = len(settings.topics.consumed) * settings.partitions
        assert len(owned) == partitions and sum(map(len, members.values())) == partitions

        def inject(live: Live) -> None:
            live.figures["partitions_per_worker"] = sorted(len(p) for p in members.values())

        figures = run_with_fault("two_workers", deployment, load, inject)
        assert figures["answered"] == figures["inputs"]
    finally:
        deployment.up("worker", scale=1, no_deps=True)


def test_triton_stopped_and_started_the_worker_rides_it_out(deployment: Deployment) -> None:
    load = workload(seed=33, tmax=1000)
    before = deployment.restarts("worker")

    def inject(live: Live) -> None:
        live.wait_outputs(len(load.expected) // 4)
        t = time.monotonic()
        deployment.compose("stop", "triton")
        live.idle(10)  # ~10 s more without Triton while inputs keep arriving
        deployment.compose("start", "triton")
        deployment.wait_healthy("triton")
        live.figures["triton_down_s"] = round(time.monotonic() - t, 1)

    figures = run_with_fault("triton_stop_start", deployment, load, inject)
    figures["worker_restarts"] = deployment.restarts("worker") - before
    save("triton_stop_start", figures)
    assert figures["worker_restarts"] == 0, "an outage inside the retry budget is not a crash"
    assert figures["bids_nbr15"] > 0, "no auction outlived the outage: not an outage"
