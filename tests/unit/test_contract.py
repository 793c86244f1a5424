"""The published contract (contract/) is what the code generates, covers every topic, validates
with the official AsyncAPI parser, and its examples validate against the JSON Schemas."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.contract.asyncapi import document
from streams.contract.catalogue import CHANGELOG_TABLES, DeadLetterHeaders, channels
from streams.contract.examples import examples
from streams.contract.publish import (
    ASYNCAPI_FILE,
    CONTRACT_DIR,
    REGENERATE,
    compatibility,
    drift,
    rendered,
    server,
    write,
)
from streams.dlq import HEADER_PREFIX
from streams.topics import Topics

VALIDATOR = CONTRACT_DIR / "check" / "validate.mjs"


def run_validator(doc: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("node") is None:
        pytest.fail("`node` is not on PATH: it validates the AsyncAPI document")
    if not (VALIDATOR.parent / "node_modules").is_dir():
        pytest.fail(
            f"the validator's packages are missing: run `make node-deps` (npm ci in {VALIDATOR.parent})"
        )
    return subprocess.run(["node", str(VALIDATOR), str(doc)], capture_output=True, text=True, timeout=120)


def test_committed_contract_is_what_the_code_generates() -> None:
    assert drift() == [], f"contract/ is out of date: run `{REGENERATE}`"


def test_no_change_breaks_the_published_contract_within_its_schema_version() -> None:
    """Before `--write` (which refuses them), a breaking change to a model fails here by name."""
    broken = [line for v in compatibility() if not v.ok for line in v.report()]
    assert broken == [], "\n".join(broken)


def test_the_asyncapi_document_and_its_examples_validate() -> None:
    proc = run_validator(CONTRACT_DIR / ASYNCAPI_FILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid AsyncAPI 3.0.0" in proc.stdout


def _broken(root: Path, change: Any) -> subprocess.CompletedProcess[str]:
    write(root)
    doc = yaml.safe_load((root / ASYNCAPI_FILE).read_text())
    change(doc)
    (root / ASYNCAPI_FILE).write_text(yaml.safe_dump(doc))
    return run_validator(root / ASYNCAPI_FILE)


def test_the_validator_fails_on_an_invalid_document(tmp_path: Path) -> None:
    proc = _broken(tmp_path, lambda doc: doc["operations"]["sendCsReplies"].update(action="publish"))
    assert proc.returncode == 1 and "operations.sendCsReplies.action" in proc.stderr


def test_the_validator_fails_on_an_example_its_schema_rejects(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        message = doc["channels"]["segmentUpdates"]["messages"]["segmentUpdate"]
        message["examples"][0]["payload"]["version"] = "3"

    proc = _broken(tmp_path, change)
    assert proc.returncode == 1
    assert "segmentUpdates/segmentUpdate example entered-cart-abandoner: payload fails" in proc.stderr


def test_every_topic_is_in_the_document() -> None:
    """The changelogs are checked against the broker's topics by the integration test."""
    addresses = {c["address"] for c in document()["channels"].values()}
    assert {"{prefix}" + t for t in Topics().all()} | {
        f"{{prefix}}{{appId}}-{t}-changelog" for t in CHANGELOG_TABLES
    } == addresses


def test_outputs_say_how_to_drop_duplicates_and_stale_versions() -> None:
    doc = document()
    for chan in channels():
        spec = doc["channels"][next(k for k, v in doc["channels"].items() if v["title"] == chan.base)]
        message = next(iter(spec["messages"].values()))
        if chan.kind == "output":
            assert message["x-dedupe-by"].startswith("$message.payload#/"), chan.base
            assert "At-least-once" in spec["description"]
    segments = doc["channels"]["segmentUpdates"]["messages"]["segmentUpdate"]
    assert segments["x-version-of"] == {
        "entity": "$message.payload#/user_id",
        "version": "$message.payload#/version",
    }


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_published_schemas_never_forbid_unknown_fields() -> None:
    for path, text in rendered().items():
        body = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        assert all(node.get("additionalProperties") is not False for node in _walk(body)), path


def test_output_schemas_describe_what_encode_writes() -> None:
    """A None is never written (exclude_none): optional, and never null; everything else is required."""
    schema = json.loads(rendered()["schemas/cs-reply.json"])
    assert "reply_text" not in schema["required"] and schema["properties"]["reply_text"] == {"type": "string"}
    assert "customer_segments" in schema["required"]  # has a default, is always written
    inputs = json.loads(rendered()["schemas/click-event.json"])
    assert "quantity" not in inputs["required"]  # a producer may leave it out


def test_every_channel_with_a_payload_has_examples_that_the_model_accepts() -> None:
    by_topic = examples()
    for chan in channels():
        if chan.payload is None:
            continue
        assert by_topic[chan.base], chan.base
        for example in by_topic[chan.base]:
            chan.payload.model.model_validate(example.payload)


def test_dead_letter_examples_come_from_dead_letter_itself() -> None:
    by_topic = examples()
    for chan in channels():
        if chan.kind != "dead-letter":
            continue
        for example in by_topic[chan.base]:
            assert example.headers is not None
            DeadLetterHeaders.model_validate(example.headers)
            assert example.headers["x-dlq-topic"] + ".dlq" == chan.base
            assert all(name.startswith(HEADER_PREFIX) or name == "traceparent" for name in example.headers)
    redacted = by_topic["chat.dlq"][1]
    assert "[EMAIL]" in redacted.payload and "@" not in redacted.payload
    assert redacted.headers is not None and redacted.headers["x-dlq-redacted"] == "email=1"


def test_the_server_serves_the_rendered_files() -> None:
    httpd = server("127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    try:
        files = rendered()
        with urllib.request.urlopen(f"{base}/") as resp:
            assert json.loads(resp.read()) == sorted(files)
        with urllib.request.urlopen(f"{base}/schemas/segment-update.json") as resp:
            assert resp.headers["Content-Type"] == "application/schema+json"
            assert resp.read().decode() == files["schemas/segment-update.json"]
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/schemas/nope.json")
        assert missing.value.code == 404
    finally:
        httpd.shutdown()
        httpd.server_close()
