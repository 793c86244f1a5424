"""The AsyncAPI 3.0 document: every topic the worker reads or writes, built from the catalogue.

The document describes the scorer as the application: it `receive`s the inputs and `send`s the
outputs. Message payloads are the same schemas as contract/schemas/ (as components, with their
definitions shared), and each message names its standalone file in `x-json-schema`.
"""

from __future__ import annotations

from typing import Any

from streams.contract.catalogue import DEAD_LETTER_HEADERS, PAYLOADS, Channel, channels
from streams.contract.examples import examples
from streams.contract.jsonschema import component_schemas
from streams.schemas import SUPPORTED_SCHEMA_VERSIONS

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"

DESCRIPTION = """\
Real-time marketing scorer: Faust workers read clickstream, chat, social and bid-request events
from Kafka, score them with Triton-served models, and write segment updates, OpenRTB bids,
customer-service replies and brand trends. This document describes the scorer: it `receive`s the
inputs and `send`s the outputs.

## What consumers may rely on

- **Delivery is at-least-once.** After a crash or a rebalance an input record can be processed
  again; its outputs are then written again, identical. Every output names the input record it
  answers (`source = {topic, partition, offset}`) and has an id derived from it (`update_id`,
  `reply_id`, `ext.response_id`, `window_id`, `alert_id`). **Drop any output whose id you have
  already seen.**
- **Segment updates are versioned per user.** Drop an update whose `version` is not greater than
  the last version you applied for that `user_id` (a redelivered older update arrives late).
- **Order** is kept per key (one key, one partition): a user's segment updates, a
  conversation's replies and a brand's windows arrive in the order they were written.
- **Keys** are UTF-8 strings (see each message's Kafka binding); every topic has the same
  partition count (`MS_PARTITIONS`, default 4) and keys are partitioned with murmur2, as the
  Java client does.
- **Topic names** are `{prefix}<name>`, `prefix` being the deployment's `MS_TOPIC_PREFIX`
  (empty by default).
- **Schemas.** Every payload carries `schema_version` (bid responses in `ext`), currently 1.
  Within a `schema_version` changes are additive only: fields may be added, never removed,
  renamed, made optional, given another type or other enum values. **Accept fields you do not
  know** (the published schemas allow additional properties), and treat an unknown
  `schema_version` as a new contract you have not adopted yet. A field the worker would write
  as `null` is left out instead.
- **Dead letters** (`<input>.dlq`) hold the original key and value bytes of a record that can
  never be processed, PII redacted, with why and where in the `x-dlq-*` headers.
- Topics tagged `internal` (scored posts, table changelogs) are the worker's own: no contract.
"""


def _camel(name: str) -> str:
    head, *rest = name.replace(".", "-").split("-")
    return head + "".join(part.capitalize() for part in rest)


def _message_id(channel: Channel) -> str:
    if channel.kind == "dead-letter":
        return "deadLetter"
    if channel.kind == "changelog":
        return "changelogEntry"
    assert channel.payload is not None
    return _camel(channel.payload.name)


def _kafka_channel_binding(channel: Channel) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": ["compact" if channel.kind == "changelog" else "delete"]}
    return {"kafka": {"partitions": 4, "topicConfiguration": config, "bindingVersion": KAFKA_BINDING}}


def _message(
    channel: Channel, schema_names: dict[str, str], by_topic: dict[str, list[Any]]
) -> dict[str, Any]:
    key = {"kafka": {"key": {"type": "string", "description": channel.key}, "bindingVersion": KAFKA_BINDING}}
    if channel.kind == "changelog":
        return {
            "name": "changelog-entry",
            "title": "Table changelog entry",
            "summary": "Faust's table changelog record: internal, no contract.",
            "contentType": "application/json",
            "payload": {"description": "A table value as Faust writes it (JSON)."},
            "bindings": key,
        }
    if channel.kind == "dead-letter":
        return {
            "name": "dead-letter",
            "title": "Dead letter",
            "summary": "The original record's value bytes, PII redacted; why and where in the headers.",
            "contentType": "application/octet-stream",
            "headers": {"$ref": f"#/components/schemas/{schema_names[DEAD_LETTER_HEADERS.name]}"},
            "payload": {
                "type": "string",
                "description": "The original value bytes (usually the JSON that failed), PII replaced by "
                "[EMAIL], [PHONE] or [CARD], cut at 768 KiB (`x-dlq-truncated`). Not necessarily "
                "UTF-8 or JSON.",
            },
            "bindings": key,
            "x-json-schema": {"headers": f"schemas/{DEAD_LETTER_HEADERS.name}.json"},
            "examples": [e.message_example() for e in by_topic[channel.base]],
        }
    payload = channel.payload
    assert payload is not None
    message: dict[str, Any] = {
        "name": payload.name,
        "title": payload.model.__name__,
        "summary": channel.summary,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{schema_names[payload.name]}"},
        "bindings": key,
        "x-json-schema": {"payload": f"schemas/{payload.name}.json"},
    }
    if channel.dedupe_by is not None:
        message["x-dedupe-by"] = f"$message.payload#/{channel.dedupe_by.replace('.', '/')}"
    if channel.version_of is not None:
        entity, version = channel.version_of
        message["x-version-of"] = {
            "entity": f"$message.payload#/{entity}",
            "version": f"$message.payload#/{version}",
        }
    message["examples"] = [e.message_example() for e in by_topic[channel.base]]
    return message


def _reading(channel: Channel) -> str:
    """How to consume an output: at-least-once, so drop duplicates (and stale versions)."""
    text = (
        "At-least-once: a record can arrive more than once, identical. Drop one whose "
        f"`{channel.dedupe_by}` you have already seen."
    )
    if channel.version_of is not None:
        entity, version = channel.version_of
        text += f" Drop one whose `{version}` is not greater than the last you applied for its `{entity}`."
    return text


def _operations(channel: Channel, channel_id: str, message_id: str) -> dict[str, Any]:
    ref = {
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}],
    }
    written = {"action": "send", "summary": f"The worker writes `{channel.base}`.", **ref}
    read = {
        "action": "receive",
        "summary": f"The worker reads `{channel.base}` (its consumer group is `{{prefix}}{{appId}}`).",
        **ref,
    }
    cap = channel_id[0].upper() + channel_id[1:]
    ops: dict[str, Any] = {}
    if channel.kind in ("input", "internal", "changelog"):
        ops[f"receive{cap}"] = read
    if channel.kind != "input":
        ops[f"send{cap}"] = written
    return ops


def document() -> dict[str, Any]:
    schema_names, schemas = component_schemas(PAYLOADS)
    by_topic = {topic: list(items) for topic, items in examples().items()}
    tag_of = {
        "input": "input",
        "output": "output",
        "internal": "internal",
        "changelog": "internal",
        "dead-letter": "dead-letter",
    }
    chans: dict[str, Any] = {}
    ops: dict[str, Any] = {}
    for channel in channels():
        channel_id = _camel(channel.base)
        message_id = _message_id(channel)
        parameters: dict[str, Any] = {"prefix": {"$ref": "#/components/parameters/prefix"}}
        if channel.kind == "changelog":
            parameters["appId"] = {"$ref": "#/components/parameters/appId"}
        chans[channel_id] = {
            "address": channel.address,
            "title": channel.base,
            "summary": channel.summary,
            **({"description": _reading(channel)} if channel.dedupe_by else {}),
            "messages": {message_id: _message(channel, schema_names, by_topic)},
            "parameters": parameters,
            "tags": [{"name": tag_of[channel.kind]}],
            "bindings": _kafka_channel_binding(channel),
        }
        ops.update(_operations(channel, channel_id, message_id))
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "marketing-scorer",
            "version": str(max(SUPPORTED_SCHEMA_VERSIONS)),
            "description": DESCRIPTION,
            "tags": [
                {"name": "input", "description": "Others write, the scorer reads."},
                {"name": "output", "description": "The scorer writes: the topics to consume."},
                {"name": "dead-letter", "description": "Input records that can never be processed."},
                {"name": "internal", "description": "The worker's own topics: no contract."},
            ],
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The embedded local stack (`python -m stack up` prints the port it took).",
            },
            "compose": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "Inside the docker compose deployment's network.",
            },
        },
        "channels": chans,
        "operations": ops,
        "components": {
            "parameters": {
                "prefix": {
                    "description": "The deployment's topic prefix, `MS_TOPIC_PREFIX`: empty by default.",
                    "default": "",
                    "examples": ["", "staging-"],
                },
                "appId": {
                    "description": "The worker's app id, `MS_APP_ID`: it names the consumer group and changelogs.",
                    "default": "marketing-scorer",
                },
            },
            "schemas": schemas,
        },
    }
