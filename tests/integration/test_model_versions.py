"""A live model swap and its rollback on the real stack: with chat, social and bid traffic
flowing, Triton is told to serve text encoder version 2 (`python -m streams models serve`'s
code), then version 1 again. Nothing may fail, be lost or be dead-lettered; outputs must name
the version that answered and use that version's labels.

Version 2 is version 1's ONNX file (hard-linked) with its own card whose neutral band differs
from version 1's, (0.45, 0.55): the same scores then read differently, so a reply labelled
with the wrong version's band is caught. The swap runs on a Triton of the test's own (its
repository under tmp_path), so the session's shared Triton never changes version."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import InferenceServerClient
from tritonclient.grpc import model_config_pb2 as mc

import triton_models
from producers.events import EventFactory, Produced
from producers.kafka import produce
from stack.local import STATE_DIR, LocalStack, WorkerProcess
from stack.observe import TopicReader, wait_caught_up
from stack.triton import TritonServer
from streams.models_cli import serve
from streams.schemas import BidResponse, CsReply, ScoredPost, SegmentUpdate
from streams.settings import Settings
from triton_models import configs

pytestmark = pytest.mark.integration

V2_BAND = (0.45, 0.55)
PHASE_S = 120.0  # bound on each wait for outputs of a version
CATCH_UP_S = 180.0


def _served_config(model: str, onnx_root: Path) -> mc.ModelConfig:
    """The session's generated CPU config, its ONNX path made absolute under `onnx_root`."""
    cfg = configs.load_config(triton_models.CPU_REPOSITORY / model / "config.pbtxt")
    cfg.parameters[configs.PARAM_ONNX].string_value = str(onnx_root / model / "{version}" / "model.onnx")
    return cfg


def versioned_repository(root: Path) -> dict[int, tuple[float, float]]:
    """A CPU repository whose text encoder has versions 1 (the built one) and 2 (the same ONNX,
    another card), serving 1; the recommender as built. Returns each version's neutral band."""
    repo, onnx_root = root / "repo", root / "onnx"
    bands = {}
    for model in triton_models.MODEL_NAMES:
        current = triton_models.current_version(model)
        cfg = _served_config(model, onnx_root)
        card = json.loads(cfg.parameters[configs.PARAM_CARD.format(version=current)].string_value)
        versions = {1: card}
        if model == triton_models.TEXT_ENCODER:
            bands[1] = tuple(card["labels"]["neutral_band"])
            labels = card["labels"] | {"neutral_band": list(V2_BAND)}
            versions[2] = card | {"version": 2, "labels": labels, "training": "copy of version 1 (test)"}
            bands[2] = V2_BAND
        del cfg.parameters[configs.PARAM_CARD.format(version=current)]
        for version, version_card in versions.items():
            key = configs.PARAM_CARD.format(version=version)
            cfg.parameters[key].string_value = json.dumps(version_card)
            (repo / model / str(version)).mkdir(parents=True)
            shutil.copyfile(configs.CPU_MODEL_PY, repo / model / str(version) / "model.py")
            (onnx_root / model / str(version)).mkdir(parents=True)
            os.link(triton_models.onnx_path(model, current), onnx_root / model / str(version) / "model.onnx")
        cfg.version_policy.specific.versions[:] = [1]
        (repo / model / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    return bands  # type: ignore[return-value]


@dataclass
class Swap:
    settings: Settings
    triton: TritonServer
    worker: WorkerProcess
    bands: dict[int, tuple[float, float]]

    def alive(self) -> None:
        if not self.worker.running():
            raise AssertionError(f"the worker exited during the test; its log:\n{self.worker.log()}")


@pytest.fixture
def swap(local_stack: LocalStack, tmp_path: Path) -> Iterator[Swap]:
    bands = versioned_repository(tmp_path)
    triton = TritonServer(tmp_path / "repo", tmp_path / "state", http_port=0, grpc_port=0, metrics_port=0)
    triton.start()
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings = local_stack.settings(topic_prefix=prefix, batch_within_s=0.02, triton_grpc_url=triton.grpc_url)
    local_stack.create_topics(settings)
    worker = WorkerProcess(settings, STATE_DIR / "test-workers" / f"{prefix}worker.log")
    worker.start()
    try:
        yield Swap(settings, triton, worker, bands)
    finally:
        worker.stop()
        triton.stop()


class Traffic(threading.Thread):
    """Chat, social and bid records at a steady rate until stopped; keeps what it sent."""

    def __init__(self, settings: Settings, factory: EventFactory) -> None:
        super().__init__(name="traffic", daemon=True)
        self.settings, self.factory = settings, factory
        self.sent: list[Produced] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            chunk = [self.factory.chat() for _ in range(4)]
            chunk += [self.factory.social() for _ in range(3)]
            chunk += [self.factory.bid_request(tmax=None) for _ in range(2)]
            report = produce(self.settings, chunk, rate=30.0)
            self.failed += report.failed
            self.sent += chunk


def _wait_for_reply_version(reader: TopicReader, topic: str, version: int, after: int, swap: Swap) -> int:
    """Read cs-replies until one of `version` arrives; return how many replies were read then."""
    deadline = time.monotonic() + PHASE_S
    while time.monotonic() < deadline:
        reader.poll(0.5)
        replies = [CsReply.model_validate_json(c.value) for c in reader.by_topic(topic)]
        if any(r.model is not None and r.model.version == version for r in replies[after:]):
            return len(replies)
        swap.alive()
    raise AssertionError(f"no cs-reply from text_encoder version {version} within {PHASE_S:.0f}s")


def _triton_failures(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nv_inference_request_failure")
    )


def _worker_failures(metrics_url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{metrics_url}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("marketing_scorer_triton_requests_total{") and 'code="OK"' not in line:
            out[line.rsplit(" ", 1)[0]] = float(line.rsplit(" ", 1)[1])
    return {k: v for k, v in out.items() if v}


def _label(p_positive: float, band: tuple[float, float]) -> str:
    low, high = band
    return "negative" if p_positive < low else "positive" if p_positive > high else "neutral"


def _phases(versions: list[int]) -> list[int]:
    """The run-length collapse of a sequence: [1, 1, 2, 2, 1] -> [1, 2, 1]."""
    return [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]


def test_a_version_swaps_in_and_rolls_back_under_traffic(swap: Swap) -> None:
    settings, topics = swap.settings, swap.settings.topics
    factory = EventFactory(seed=11)
    clicks = factory.session("2001", [196, 14084, 12427]) + factory.session("2002", [26088, 26405])
    assert produce(settings, clicks).failed == 0
    traffic = Traffic(settings, factory)
    client = InferenceServerClient(url=swap.triton.grpc_url)
    watched = [topics.cs_replies, topics.social_scored, topics.segment_updates, topics.ad_bids]
    try:
        with TopicReader(settings, [*watched, *topics.dead_letters]) as reader:
            traffic.start()
            seen = _wait_for_reply_version(reader, topics.cs_replies, 1, 0, swap)
            serve(client, "text_encoder", 2)  # what `python -m streams models serve text_encoder 2` does
            seen = _wait_for_reply_version(reader, topics.cs_replies, 2, seen, swap)
            serve(client, "text_encoder", 1)  # the rollback is the same operation
            _wait_for_reply_version(reader, topics.cs_replies, 1, seen, swap)
            traffic.stop.set()
            traffic.join(timeout=60)
            assert not traffic.is_alive(), "the traffic thread did not stop"
            wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=swap.alive)
            reader.read_to_end()
        ready = {
            int(m["version"])
            for m in client.get_model_repository_index(as_json=True)["models"]
            if m["name"] == "text_encoder" and m.get("state") == "READY"
        }
    finally:
        traffic.stop.set()
        client.close()
    swap.alive()
    assert traffic.failed == 0
    assert ready == {1}, f"after the rollback Triton serves text_encoder versions {ready}"

    # nothing failed, nothing was dead-lettered
    assert _triton_failures(swap.triton.metrics_url) == 0
    assert _worker_failures(swap.worker.metrics_url) == {}, "the worker saw failed Triton requests"
    dead = {t: len(reader.by_topic(t)) for t in topics.dead_letters if reader.by_topic(t)}
    assert dead == {}, f"dead letters during the swap: {dead}"

    # nothing lost: every chat, post and bid request answered exactly once
    sent = {
        kind: [json.loads(p.value) for p in traffic.sent if p.topic == kind] for kind in ("chat", "social")
    }
    bids = [json.loads(p.value)["id"] for p in traffic.sent if p.topic == "bid-requests"]
    replies = [CsReply.model_validate_json(c.value) for c in reader.by_topic(topics.cs_replies)]
    scored = [ScoredPost.model_validate_json(c.value) for c in reader.by_topic(topics.social_scored)]
    answers = [BidResponse.model_validate_json(c.value) for c in reader.by_topic(topics.ad_bids)]
    assert sorted(r.in_reply_to for r in replies) == sorted(m["message_id"] for m in sent["chat"])
    assert sorted(s.post_id for s in scored) == sorted(p["post_id"] for p in sent["social"])
    assert sorted(a.id for a in answers) == sorted(bids)

    # every output names its version, and the chat replies used that version's neutral band
    assert all(r.model is not None and r.model.name == "text_encoder" for r in replies)
    assert all(s.model is not None and s.model.name == "text_encoder" for s in scored)
    for reply in replies:
        assert reply.model is not None
        band = swap.bands[reply.model.version]
        assert reply.sentiment.label.value == _label(reply.sentiment.p_positive, band), reply
    for post in scored:
        assert post.model is not None
        assert post.sentiment.value == _label(post.p_positive, swap.bands[post.model.version]), post
    # per partition, in offset order: version 1, then 2, then 1 again (never back and forth)
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for r in replies:
        assert r.model is not None
        by_partition.setdefault(r.source.partition, []).append((r.source.offset, r.model.version))
    for partition, rows in by_partition.items():
        phases = _phases([v for _, v in sorted(rows)])
        assert phases in ([1], [1, 2], [1, 2, 1], [2], [2, 1]), (partition, phases)
    assert any(p == [1, 2, 1] for p in (_phases([v for _, v in sorted(r)]) for r in by_partition.values()))
    # the recommender was not swapped: its outputs name version 1
    updates = [SegmentUpdate.model_validate_json(c.value) for c in reader.by_topic(topics.segment_updates)]
    assert all(u.model is None or u.model.version == 1 for u in updates)
    assert all(a.ext.model is None or a.ext.model.version == 1 for a in answers)
