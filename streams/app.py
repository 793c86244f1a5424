"""The Faust application: topics, the profile table and one agent per input topic.

This is the only module (with `streams.__main__`) that imports Faust. Input records are read as
raw bytes, so nothing Faust does can fail on bad input: decoding is ours (`streams.serde`), and
every record ends as outputs or a dead letter. A batch's outputs are awaited until Kafka has
acknowledged them before the batch's input offsets are acknowledged (`take_events` acks after
the loop body), which is what makes the default guarantee at-least-once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator, MutableMapping
from typing import Any

import faust
from faust.types import EventT, StreamT, TableT

from streams.campaigns import load_campaigns
from streams.dlq import DeadLetter, RecordMeta
from streams.handlers.bids import handle_bids
from streams.handlers.chat import handle_chat
from streams.handlers.common import Context, Outcome, Output
from streams.handlers.segments import handle_clicks, handle_social
from streams.inference import TritonModels
from streams.labels import load_labels
from streams.pipeline import Route, process
from streams.schemas import BidRequest, ChatMessage, ClickEvent, SocialPost
from streams.settings import Settings
from streams.text import TextTokenizer

log = logging.getLogger("streams.app")

STATS_EVERY_S = 10.0


class TableProfiles(MutableMapping[str, Any]):
    """The profile table seen through str keys. Keys are stored as the user id's UTF-8 bytes, the
    same bytes as the input records' keys, so with `use_partitioner` the changelog partition of a
    user is the partition their events arrive on."""

    def __init__(self, table: TableT) -> None:
        self._table = table

    def __getitem__(self, key: str) -> Any:
        return self._table[key.encode()]

    def __setitem__(self, key: str, value: Any) -> None:
        self._table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self._table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self._table)

    def __len__(self) -> int:
        return len(self._table)


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """Keys and values as bytes: decoding is ours, so no record can fail inside Faust."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def meta_of(event: EventT) -> RecordMeta:
    msg = event.message
    key = msg.key if isinstance(msg.key, bytes | type(None)) else str(msg.key).encode()
    raw_headers: Any = msg.headers.items() if isinstance(msg.headers, dict) else (msg.headers or [])
    headers = [(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in raw_headers]
    timestamp_ms = int(msg.timestamp * 1000) if msg.timestamp else None
    return RecordMeta(msg.topic, msg.partition, msg.offset, key, headers, timestamp_ms)


def create_app(settings: Settings) -> faust.App:
    datadir = settings.datadir / settings.faust_app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        settings.faust_app_id,
        **settings.faust_broker_kwargs(),
        datadir=str(datadir),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        web_enabled=False,
    )
    topics = settings.topics
    sinks = {name: raw_topic(app, name, settings.partitions) for name in topics.outputs + topics.dead_letters}
    profiles = app.Table(
        "profiles",
        partitions=settings.partitions,
        key_type=bytes,  # -> the "raw" codec: changelog keys are the user id's bytes; values are JSON
        use_partitioner=True,
    )
    models = TritonModels(settings, TextTokenizer(settings.tokenizer_path, settings.max_seq_len))
    ctx = Context(settings=settings, models=models, labels=load_labels(), profiles=TableProfiles(profiles))
    book = load_campaigns()
    stats: Counter[str] = Counter()

    async def bids(records: Any, c: Context) -> list[Outcome]:
        return await handle_bids(records, c, book)

    routes = {
        topics.clickstream: Route("clickstream", ClickEvent, handle_clicks),
        topics.chat: Route("chat", ChatMessage, handle_chat, text_field="text"),
        topics.social: Route("social", SocialPost, handle_social, text_field="text"),
        topics.bid_requests: Route("bids", BidRequest, bids),
    }

    async def publish(outcomes: list[Outcome]) -> None:
        pending = []
        for o in outcomes:
            if isinstance(o, Output):
                pending.append(await sinks[o.topic].send(key=o.key.encode(), value=o.value))
                stats[f"out:{o.topic}"] += 1
            elif isinstance(o, DeadLetter):
                pending.append(await sinks[o.topic].send(key=o.key, value=o.value, headers=o.headers))
                stats[f"dlq:{o.topic}"] += 1
        await asyncio.gather(*pending)  # delivered (acks=all) before the inputs are acknowledged

    def make_agent(route: Route) -> Any:
        async def agent(stream: StreamT) -> None:
            assert isinstance(stream, faust.Stream)  # take_events is on the class, not the protocol
            async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
                batch = [(meta_of(e), e.value) for e in events]
                await publish(await process(batch, route, ctx))
                stats[f"in:{route.name}"] += len(batch)

        agent.__name__ = agent.__qualname__ = f"{route.name}_agent"
        return agent

    for source, route in routes.items():
        app.agent(raw_topic(app, source, settings.partitions), name=f"{route.name}-agent")(make_agent(route))

    @app.timer(STATS_EVERY_S)
    async def report() -> None:
        if stats:
            log.info("processed so far: %s", ", ".join(f"{k}={v}" for k, v in sorted(stats.items())))

    @app.task
    async def wait_for_models() -> None:
        await models.wait_ready(within_s=settings.triton_retry_max_s)
        log.info("models ready on %s", settings.triton_grpc_url)

    async def close_models(sender: Any, *_: Any, **__: Any) -> None:
        await models.close()

    app.on_before_shutdown.connect(close_models)  # type: ignore[arg-type]  # mode's stub omits async receivers

    return app
