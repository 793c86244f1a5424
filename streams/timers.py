"""The worker's timers: the stats line, the brand-window flush, state expiry, the liveness check
and the metrics that are measured rather than counted (consumer lag, campaign spend)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, MutableMapping
from typing import Any

from faust.types import AppT

from streams.agents import Activity
from streams.campaigns import CampaignBook
from streams.errors import WorkerStalled
from streams.faust_compat import active_partitions, committed_offset, fetch_state
from streams.handlers.common import Context
from streams.handlers.notices import ExpirySweep, write_expired
from streams.handlers.trends import flush_quiet_brands, write_flushed
from streams.housekeeping import SWEEP_EVERY_S, Sweeper
from streams.inference import TritonModels
from streams.liveness import LivenessCheck
from streams.metrics import WorkerMetrics, campaign_paces, consumer_lag
from streams.offsets import SkipGuard
from streams.pacing import Ledger
from streams.publisher import Publisher
from streams.tables import key_partition

log = logging.getLogger("streams.timers")

STATS_EVERY_S = 10.0
BRAND_FLUSH_EVERY_S = 5.0
LIVENESS_EVERY_S = 5.0
METRICS_EVERY_S = 5.0
EXPIRE_EVERY_S = 1.0


def add_stats_report(app: AppT, stats: Counter[str], models: TritonModels) -> None:
    @app.timer(STATS_EVERY_S)
    async def report() -> None:
        if stats:
            log.info(
                "processed so far: %s; Triton requests %d, %d of them abandoned at their deadline",
                ", ".join(f"{k}={v}" for k, v in sorted(stats.items())),
                models.calls,
                models.abandoned,
            )


def owned_keys(partitions: Collection[int], count: int) -> Callable[[str], bool]:
    """Whether a table key (the records' key, e.g. a brand) belongs to one of `partitions`."""
    return lambda key: key_partition(key.encode(), count) in partitions


async def flush_owned_brands(
    app: AppT, ctx: Context, windows: MutableMapping[str, Any], publisher: Publisher
) -> None:
    """Close the quiet windows of the brands this worker is active for. The table also holds
    standby copies of other workers' brands: closing those would close a window twice and write
    to a changelog partition another worker owns."""
    settings = ctx.settings
    active = active_partitions(app, settings.topics.social_scored)  # social-scored is keyed by brand
    if active:
        owned = owned_keys(active, settings.partitions)
        flushed = flush_quiet_brands(ctx, windows, ctx.now(), owned)
        await publisher.publish(flushed.outcomes)  # the windows first, then the states that close them
        write_flushed(windows, flushed)


def add_brand_flush(app: AppT, ctx: Context, windows: MutableMapping[str, Any], publisher: Publisher) -> None:
    @app.timer(BRAND_FLUSH_EVERY_S)
    async def close_quiet_brand_windows() -> None:
        await flush_owned_brands(app, ctx, windows, publisher)


def add_notice_expiry(
    app: AppT, ctx: Context, sweep: ExpirySweep, publisher: Publisher, stats: Counter[str]
) -> None:
    """Release the reservations no billing or loss notice settled within the notice timeout, and
    delete the resolved ones whose time is up, a slice of the ledger per tick, in the partitions
    this worker is active for (bid-requests and ad-events are co-partitioned). The `expired`
    outcomes are published first, then the ledger written, as the brand flush does."""
    topics = ctx.settings.topics

    @app.timer(EXPIRE_EVERY_S)
    async def expire_reservations() -> None:
        active = active_partitions(app, topics.bid_requests) & active_partitions(app, topics.ad_events)
        if not active:
            return
        expiry = sweep.step(ctx.now(), ctx.settings, active)
        if expiry.keys:
            await publisher.publish(expiry.outcomes)
            released = write_expired(sweep.state, expiry, now=ctx.now(), settings=ctx.settings)
            stats["expired:reservations"] += released
            stats["expired:tombstones"] += len(expiry.keys) - released


def add_state_sweep(app: AppT, ctx: Context, sweeper: Sweeper, stats: Counter[str]) -> None:
    """Expire idle profiles and dead ledger entries, a slice per tick, in the partitions this
    worker is active for (profiles and the ledger follow the input partitions; a delete in a
    standby copy would be a changelog write to another worker's partition)."""
    topics = ctx.settings.topics

    @app.timer(SWEEP_EVERY_S)
    async def expire_state() -> None:
        active = active_partitions(app, topics.clickstream) & active_partitions(app, topics.bid_requests)
        if not active:
            return
        swept = sweeper.step(ctx.now(), active)
        for what in ("profiles", "caps", "caps_trimmed", "spend"):
            if n := getattr(swept, what):
                stats[f"expired:{what}"] += n


def add_liveness_check(
    app: AppT,
    check: LivenessCheck,
    inputs: Collection[str],
    guard: SkipGuard,
    activity: Activity,
    agent_of: Mapping[str, str],
    stop: Callable[[BaseException], None],
    metrics: WorkerMetrics,
) -> None:
    """Stop the worker loudly, so that the supervisor restarts it, if an input partition it owns
    has records waiting and neither processing nor committing moves. `agent_of` maps each input
    topic to its agent's name."""

    @app.timer(LIVENESS_EVERY_S)
    async def check_liveness() -> None:
        metrics.liveness_checked(await liveness_result())

    async def liveness_result() -> str:
        """ok, no_offsets (the broker did not answer in time) or stalled."""
        consumer = app.consumer
        # Only the agents' own inputs: changelog partitions are read only to recover tables.
        owned = {(tp.topic, tp.partition): tp for tp in consumer.assignment() if tp.topic in inputs}
        check.forget(set(owned))
        if not owned:
            return "ok"
        committed: dict[tuple[str, int], int | None] = {}
        for key, tp in owned.items():
            known = committed_offset(consumer, tp)  # never committed: commits stand where this worker started
            committed[key] = guard.first_taken.get(key) if known is None else known
        # Only a partition with neither a commit nor a record taken needs its log start.
        unknown = [
            tp for key, tp in owned.items() if (committed[key] or -1) < 0 and guard.expected.get(key, -1) < 0
        ]
        try:
            # From the broker, bounded: the consumer's own fetch state has no high watermark for
            # a partition it never fetched.
            async with asyncio.timeout(LIVENESS_EVERY_S):
                ends = await consumer.highwaters(*owned.values())
                log_starts = await consumer.earliest_offsets(*unknown) if unknown else {}
        except Exception as exc:  # a broker outage is not a stalled consumer: check again later
            log.debug("liveness: no offsets from the broker this time (%r)", exc)
            return "no_offsets"
        now = time.monotonic()
        for key, tp in owned.items():
            stall = check.observe(
                key, ends.get(tp), log_starts.get(tp), guard.expected.get(key), committed[key], now
            )
            if stall is not None:
                log.critical(
                    "liveness: %s (%s; %s); stopping the worker so that it is restarted",
                    stall,
                    fetch_state(consumer, tp),
                    activity.describe(agent_of[tp.topic]),
                )
                stop(WorkerStalled(str(stall)))
                return "stalled"
        return "ok"


def add_metrics_refresh(
    app: AppT,
    metrics: WorkerMetrics,
    inputs: Collection[str],
    ctx: Context,
    ledger: Ledger,
    book: CampaignBook,
) -> None:
    """Every few seconds: the lag of each input partition this worker owns (end offset from the
    broker, bounded by a timeout, minus the offset this worker committed), and each campaign's
    spend, budget and pacing line on the bid partitions it owns (from the ledger table). Nothing
    is measured during a rebalance: the figures would describe partitions changing hands."""
    bid_requests = ctx.settings.topics.bid_requests

    @app.timer(METRICS_EVERY_S)
    async def measure() -> None:
        if app.rebalancing:
            return
        metrics.set_campaigns(campaign_paces(ledger, book, active_partitions(app, bid_requests), ctx.now()))
        owned = {(tp.topic, tp.partition): tp for tp in app.consumer.assignment() if tp.topic in inputs}
        try:
            async with asyncio.timeout(METRICS_EVERY_S):
                ends = await app.consumer.highwaters(*owned.values()) if owned else {}
                # Faust's own record of what this worker committed (it is the partitions' only
                # committer), not the admin API's OffsetFetch: librdkafka's admin client can crash
                # the process on a NOT_COORDINATOR answer while the broker restarts (a SIGSEGV seen
                # in the broker-restart fault test; confluent-kafka-python#1982, -javascript#374)
                committed = {key: committed_offset(app.consumer, tp) for key, tp in owned.items()}
                fresh = [tp for key, tp in owned.items() if committed.get(key) is None]
                starts = await app.consumer.earliest_offsets(*fresh) if fresh else {}
        except Exception as exc:  # the last figures stay; the next tick asks again
            log.debug("metrics: no offsets from the broker this time (%r)", exc)
            return
        metrics.set_lag(
            consumer_lag(
                {key: ends[tp] for key, tp in owned.items() if tp in ends},
                committed,
                {key: starts[tp] for key, tp in owned.items() if tp in starts},
            )
        )
