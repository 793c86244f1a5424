"""The contract end to end on the real stack: the TypeScript example consumer, built with types
generated from the AsyncAPI document alone, reads what a real worker wrote plus the cases the
contract warns about (duplicates, a stale version, an unknown field, an unadopted
schema_version), and reports what an independent count expects. `python -m streams tail`
reads the same topics, and every topic the worker created is in the contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from producers.events import EventFactory, Produced
from producers.kafka import produce
from stack.local import REPO, settings_env
from stack.observe import Consumed, TopicReader, wait_caught_up
from streams.contract.catalogue import channels
from streams.tail import topic_name
from tests.integration.conftest import Scorer

pytestmark = pytest.mark.integration

CONSUMER_DIR = REPO / "examples" / "ts-consumer"
CATCH_UP_S = 120.0


@pytest.fixture(scope="module")
def consumer_js() -> Path:
    """`npm run build`: types generated from contract/asyncapi.yaml, then tsc."""
    if shutil.which("npm") is None:
        pytest.fail("`npm` is not on PATH: the example consumer is TypeScript on Node")
    if not (CONSUMER_DIR / "node_modules").is_dir():
        pytest.fail(
            f"the example consumer's packages are missing: run `make node-deps` (npm ci in {CONSUMER_DIR})"
        )
    proc = subprocess.run(
        ["npm", "run", "build"], cwd=CONSUMER_DIR, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return CONSUMER_DIR / "dist" / "consumer.js"


def value(rec: Consumed) -> dict[str, Any]:
    return orjson.loads(rec.value or b"")


def tail(scorer: Scorer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(scorer.settings)}
    return subprocess.run(
        [sys.executable, "-m", "streams", "tail", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_example_consumer_and_tail_read_the_contract(scorer: Scorer, consumer_js: Path) -> None:
    settings, topics = scorer.settings, scorer.settings.topics
    factory = EventFactory(seed=14)
    clicks = factory.session("2001", [196, 14084, 12427]) + factory.session("2002", [26088, 26405])
    chats = [
        factory.chat(user_id="u2001", text=t)
        for t in ("Hello", "Where is my order 123456?", "I want a refund, this is the worst!!!")
    ]
    bad_chat = Produced("chat", b"u2001", b"{not json", kind="not_json")
    assert produce(settings, clicks).failed == 0
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)
    assert produce(settings, [*chats, bad_chat]).failed == 0
    wait_caught_up(settings, topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)
    with TopicReader(settings, [topics.segment_updates, topics.cs_replies]) as reader:
        reader.read_to_end()
    updates, replies = reader.by_topic(topics.segment_updates), reader.by_topic(topics.cs_replies)
    assert updates and len(replies) == len(chats)

    # What the contract warns about, written straight to the output topics, after the originals
    # (same keys, so the same partitions).
    first = value(updates[0])
    stale = {
        **first,
        "update_id": "segment:clickstream/0/999999",
        "source": {**first["source"], "offset": 999999},
    }
    unadopted = {**first, "update_id": "segment:clickstream/0/999998", "schema_version": 2, "version": 99}
    newer = {**value(replies[0]), "reply_id": "reply:chat/0/999999", "future_field": {"added": "later"}}
    extra = [
        *(Produced("segment-updates", r.key, r.value or b"") for r in updates[:2]),  # duplicates
        Produced("segment-updates", updates[0].key, orjson.dumps(stale)),
        Produced("segment-updates", updates[0].key, orjson.dumps(unadopted)),
        Produced("cs-replies", replies[0].key, replies[0].value or b""),  # a duplicate
        Produced("cs-replies", replies[0].key, orjson.dumps(newer)),
    ]
    assert produce(settings, extra).failed == 0

    # The independent expectation, from what the worker wrote.
    ids = [value(u)["update_id"] for u in updates]
    latest: dict[str, int] = {}
    for u in map(value, updates):
        latest[u["user_id"]] = max(latest.get(u["user_id"], 0), u["version"])
    total = len(updates) + len(replies) + len(extra)
    proc = subprocess.run(
        ["node", str(consumer_js), "--bootstrap", settings.kafka_bootstrap, "--prefix", settings.topic_prefix,
         "--max-records", str(total), "--timeout-s", "90"],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = orjson.loads(proc.stdout)
    assert summary["records"] == total and summary["timedOut"] is False
    assert summary["topics"]["segment-updates"] == {
        "received": len(updates) + 4,
        "applied": len(set(ids)),
        "duplicate": 2 + len(ids) - len(set(ids)),
        "stale": 1,
        "invalid": 1,
    }
    assert summary["topics"]["cs-replies"] == {
        "received": len(replies) + 2,
        "applied": len(replies) + 1,
        "duplicate": 1,
        "stale": 0,
        "invalid": 0,
    }
    assert summary["latestVersions"] == latest
    assert summary["replyActions"] == Counter([value(r)["action"] for r in replies] + [newer["action"]])
    assert summary["unknownFields"] == ["cs-replies:future_field"]
    assert summary["invalidReasons"] == ["segment-updates: /schema_version must be equal to constant"]

    # tail: the same records, decoded and checked, bounded
    segment_lines = tail(scorer, "segment-updates", "--from-beginning", "--json")
    assert segment_lines.returncode == 0, segment_lines.stderr
    shown = [orjson.loads(line) for line in segment_lines.stdout.splitlines()]
    assert len(shown) == len(updates) + 4
    assert [s["problems"] for s in shown if s["value"]["update_id"] == unadopted["update_id"]] == [
        ["schema_version: Input should be 1"]
    ]
    assert all(s["problems"] == [] for s in shown if s["value"]["update_id"] != unadopted["update_id"])
    conversation = (replies[0].key or b"").decode()
    reply_lines = tail(scorer, "cs-replies", "--key", conversation, "--json")
    shown = [orjson.loads(line) for line in reply_lines.stdout.splitlines()]
    assert shown and {s["key"] for s in shown} == {conversation}
    assert [s["unknown_fields"] for s in shown if s["value"]["reply_id"] == newer["reply_id"]] == [
        ["future_field"]
    ]
    dead = tail(scorer, "chat.dlq", "--from-beginning")
    assert dead.returncode == 0, dead.stderr
    assert "  x-dlq-reason: not_json" in dead.stdout and "  dead letter: ok" in dead.stdout
    assert "value (9 bytes): {not json" in dead.stdout

    # every topic the worker and the stack created for this test is one the contract describes
    admin = AdminClient(settings.confluent_config())
    on_broker = {t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)}
    assert on_broker == {topic_name(settings, c) for c in channels()}
