"""The Faust application: topics, tables, one batch agent per input topic, the timers, wired.

The parts live in their own modules: the batch agent (`streams.agents`), the publisher that
waits for Kafka's acks before inputs are acknowledged (`streams.publisher`), the skip guard
(`streams.offsets`), the tables (`streams.tables`), the timers (`streams.timers`), how the worker
stops itself (`streams.shutdown`), and every reach into Faust's internals
(`streams.faust_compat`). Why delivery works the way it does: docs/design/delivery.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from functools import partial
from typing import Any

import faust
from faust.types import TP

from streams.admin import GroupOffsets
from streams.agents import Activity, AgentParts, batch_agent
from streams.campaigns import CampaignBook, load_campaigns
from streams.faust_compat import committed_offset, install_rebalance_workarounds
from streams.handlers.bids import answer_invalid_request, handle_bids
from streams.handlers.chat import handle_chat
from streams.handlers.common import Context, Outcome
from streams.handlers.notices import ExpirySweep, handle_ad_events
from streams.handlers.segments import handle_clicks, handle_social
from streams.handlers.trends import handle_brand_posts
from streams.housekeeping import Sweeper
from streams.http import EndpointSensor, EndpointServer, Readiness
from streams.liveness import LivenessCheck
from streams.logsafe import hide_sasl_secrets
from streams.metrics import MeteredModels, WorkerMetrics
from streams.offsets import Offsets, Partition, SkipGuard, assignment_starts
from streams.pacing import Ledger
from streams.pipeline import Route
from streams.publisher import Publisher
from streams.replies import ReplyIndex, load_catalogue
from streams.schemas import BidRequest, ChatMessage, ClickEvent, ScoredPost, SocialPost
from streams.schemas.adevents import AdEvent
from streams.settings import Settings
from streams.shutdown import EXIT_FATAL, Health, hard_exit, stop_loudly
from streams.tables import Tables, key_partition, make_tables
from streams.text import TextTokenizer
from streams.timers import (
    add_brand_flush,
    add_liveness_check,
    add_metrics_refresh,
    add_notice_expiry,
    add_state_sweep,
    add_stats_report,
)

__all__ = ["EXIT_FATAL", "Health", "create_app", "key_partition"]

log = logging.getLogger("streams.app")


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


def new_faust_app(settings: Settings) -> faust.App:
    datadir = settings.datadir / settings.faust_app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    return faust.App(
        settings.faust_app_id,
        **settings.faust_broker_kwargs(),
        datadir=str(datadir),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        producer_acks=-1,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        web_enabled=False,
    )


def routes(
    settings: Settings, tables: Tables, book: CampaignBook, metrics: WorkerMetrics | None = None
) -> dict[str, Route]:
    """Input topic -> how its records are processed. ad-events shares the bids' ledger: Faust's
    assignor gives partition P of every topic with the same partition count that all workers
    subscribe to, to the same worker (faust/assignor/partition_assignor.py, co-partitioned groups)."""
    topics = settings.topics
    tally = metrics.notice if metrics is not None else (lambda kind, result: None)

    async def bids(records: Any, c: Context) -> list[Outcome]:
        return await handle_bids(records, c, book, tables.ledger)

    async def notices(records: Any, c: Context) -> list[Outcome]:
        return await handle_ad_events(records, c, book, tables.ledger, tally)

    async def brands(records: Any, c: Context) -> list[Outcome]:
        return await handle_brand_posts(records, c, tables.brand_windows)

    return {
        topics.clickstream: Route("clickstream", ClickEvent, handle_clicks, time_field="ts"),
        topics.chat: Route("chat", ChatMessage, handle_chat, text_field="text", time_field="ts"),
        topics.social: Route("social", SocialPost, handle_social, text_field="text", time_field="ts"),
        topics.bid_requests: Route("bids", BidRequest, bids, on_invalid=answer_invalid_request),
        topics.ad_events: Route("notices", AdEvent, notices, time_field="received"),
        topics.social_scored: Route("brands", ScoredPost, brands),
    }


def skip_guard(app: faust.App, group_offsets: GroupOffsets, inputs: set[str]) -> SkipGuard:
    """The skip guard, looking up assignment starts from the broker (the group's committed
    offsets with the admin API, the log starts with the consumer), and forgetting revoked
    partitions."""

    async def committed(partitions: list[Partition]) -> Offsets:
        return await asyncio.to_thread(group_offsets.committed, partitions)

    async def log_starts(partitions: list[Partition]) -> Offsets:
        found: Mapping[Any, int] = await app.consumer.earliest_offsets(*(TP(*p) for p in partitions))
        return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

    def fallback(partition: Partition) -> int | None:
        return committed_offset(app.consumer, TP(*partition))

    def owned() -> list[Partition]:
        return [(tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in inputs]

    guard = SkipGuard(
        partial(assignment_starts, committed=committed, log_starts=log_starts, fallback=fallback),
        owned,
        hard_exit,
    )

    def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """on_partitions_revoked receiver: (sender, revoked partitions, signal=...)."""
        guard.forget((tp.topic, tp.partition) for tp in (args[0] if args else ()))

    app.on_partitions_revoked.connect(forget_revoked)
    return guard


def add_endpoints(
    app: faust.App, settings: Settings, inputs: set[str], health: Health, metrics: WorkerMetrics
) -> Readiness:
    """/health, /ready and /metrics (streams.http), served for as long as the app runs."""

    def owned() -> int:
        return sum(1 for tp in app.consumer.assignment() if tp.topic in inputs)

    readiness = Readiness(owned=owned, stopping=lambda: health.fatal)
    metrics.track(lambda: readiness.ready, lambda: app.rebalancing_count)
    server = EndpointServer(settings.metrics_host, settings.metrics_port, readiness, metrics.registry)
    app.sensors.add(EndpointSensor(server, readiness))
    return readiness


def create_app(settings: Settings, health: Health | None = None) -> faust.App:
    health = health if health is not None else Health()
    hide_sasl_secrets()  # aiokafka logs the SASL PLAIN password at DEBUG otherwise
    app = new_faust_app(settings)
    topics = settings.topics
    inputs = set(topics.consumed)
    install_rebalance_workarounds(app, inputs)
    metrics = WorkerMetrics(topics, group=settings.faust_app_id)
    readiness = add_endpoints(app, settings, inputs, health, metrics)

    tables = make_tables(app, settings)
    tokenizer = TextTokenizer(settings.tokenizer_path, settings.max_seq_len)
    models = MeteredModels(settings, tokenizer, metrics)
    ctx = Context(
        settings=settings,
        models=models,
        profiles=tables.profiles,
        replies=ReplyIndex(load_catalogue()),
    )
    stats: Counter[str] = Counter()
    sinks = {
        name: raw_topic(app, name, settings.partitions)
        for name in topics.outputs + topics.internal + topics.dead_letters
    }
    publisher = Publisher(sinks, stats, metrics)
    group_offsets = GroupOffsets(settings, app.conf.id)
    guard = skip_guard(app, group_offsets, inputs)
    activity = Activity()

    def stop(why: BaseException) -> None:
        metrics.stopping(why)
        stop_loudly(health, why)

    parts = AgentParts(ctx, guard, publisher, activity, stats, stop, metrics)
    book = load_campaigns()
    by_topic = routes(settings, tables, book, metrics)
    for source, route in by_topic.items():
        within = settings.bid_batch_within_s if route.name == "bids" else settings.batch_within_s
        agent = batch_agent(route, parts, settings.batch_size, within)
        app.agent(raw_topic(app, source, settings.partitions), name=f"{route.name}-agent")(agent)

    add_stats_report(app, stats, models)
    add_brand_flush(app, ctx, tables.brand_windows, publisher)
    add_notice_expiry(app, ctx, ExpirySweep(tables.ledger), publisher, stats)
    sweeper = Sweeper(
        tables.profiles,
        tables.ledger,
        settings=settings,
        book=book,
        profile_partition=lambda user: key_partition(user.encode(), settings.partitions),
    )
    add_state_sweep(app, ctx, sweeper, stats)
    add_liveness_check(
        app,
        LivenessCheck(settings.liveness_stall_s),
        inputs,
        guard,
        activity,
        {topic: route.name for topic, route in by_topic.items()},
        stop,
        metrics,
    )
    ledger = Ledger(tables.ledger, partitions=settings.partitions)
    add_metrics_refresh(app, metrics, inputs, ctx, ledger, book)

    @app.task
    async def wait_for_models() -> None:
        await models.wait_ready(within_s=settings.triton_retry_max_s)
        readiness.models_ready = True
        log.info("models ready on %s", settings.triton_grpc_url)

    async def close_models(sender: Any, *_: Any, **__: Any) -> None:
        await models.close()

    app.on_before_shutdown.connect(close_models)  # type: ignore[arg-type]  # mode's stub omits async receivers

    return app
