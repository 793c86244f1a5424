"""The Faust application: topics, the profile table and one agent per input topic.

This is the only module (with `streams.__main__`) that imports Faust. Input records are read as
raw bytes, so nothing Faust does can fail on bad input: decoding is ours (`streams.serde`), and
every record ends as outputs or a dead letter. A batch's outputs are awaited until Kafka has
acknowledged them before the batch's input offsets are acknowledged (`take_events` acks after
the loop body), which is what makes the default guarantee at-least-once.

Faust 0.15.3 can skip records around a rebalance; three defences, all exercised by
tests/integration/test_faults.py: the flow is held until Faust's seek (`hold_flow_until_seek`),
that seek also covers never-committed partitions (`seek_fresh_partitions_too`), and whatever
still slips through is caught by the skip guard (`check_contiguous`) or the liveness check,
which stop the worker uncommitted so that its restart reads the records again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiokafka.partitioner import murmur2
from faust.types import ChannelT, EventT, StreamT, TableT

from streams.admin import GroupOffsets
from streams.campaigns import load_campaigns
from streams.dlq import DeadLetter, RecordMeta
from streams.errors import WorkerStalled
from streams.handlers.bids import handle_bids
from streams.handlers.chat import handle_chat
from streams.handlers.common import Context, Outcome, Output
from streams.handlers.segments import handle_clicks, handle_social
from streams.handlers.trends import flush_quiet_brands, handle_brand_posts
from streams.inference import TritonModels
from streams.labels import load_labels
from streams.liveness import LivenessCheck
from streams.logsafe import hide_sasl_secrets
from streams.pacing import partition_of
from streams.pii import redact
from streams.pipeline import Route, process
from streams.replies import ReplyIndex, load_catalogue
from streams.schemas import BidRequest, ChatMessage, ClickEvent, ScoredPost, SocialPost
from streams.settings import Settings
from streams.text import TextTokenizer

log = logging.getLogger("streams.app")

STATS_EVERY_S = 10.0
BRAND_FLUSH_EVERY_S = 5.0
LIVENESS_EVERY_S = 5.0


class StrKeyed(MutableMapping[str, Any]):
    """A table seen through str keys, stored as UTF-8 bytes: the same bytes as the keys of the
    records that update them (user id, brand), so `KeyedTable` puts each key's changelog on the
    partition its records arrive on."""

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


def key_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as in the Java client, aiokafka and librdkafka's
    murmur2_random): the partition that records with this key are produced to."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KeyedTable(faust.Table):
    """A table whose changelog partition for a key is the partition records with that key arrive
    on. Computed here: Faust's `use_partitioner` asks the producer, which fails with a TypeError
    until it has fetched the changelog topic's metadata (seen on a worker's first batch)."""

    def partition_for_key(self, key: Any) -> int | None:
        assert self.partitions is not None
        return key_partition(key if isinstance(key, bytes) else str(key).encode(), self.partitions)


class LedgerTable(faust.Table):
    """The bidder's budget, pacing and frequency-cap state. Its keys name the input partition they
    belong to (`p<P>/...`, see streams.pacing), and that is where their changelog must go."""

    def partition_for_key(self, key: Any) -> int | None:
        return partition_of(key.decode() if isinstance(key, bytes) else str(key))


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


@dataclass
class Health:
    """Why the worker stopped itself, if it did: the process then exits with EXIT_FATAL."""

    fatal: BaseException | None = None


EXIT_FATAL = 70  # EX_SOFTWARE
FATAL_EXIT_GRACE_S = 20.0


def _hard_exit() -> None:
    """Exit now, without Faust's shutdown (which commits): safe, nothing uncommitted is lost."""
    log.critical("exiting hard (code %d), committing nothing more", EXIT_FATAL)
    logging.shutdown()
    os._exit(EXIT_FATAL)


def seek_fresh_partitions_too(consumer: Any, inputs: set[str]) -> None:
    """Make Faust's seek to the committed offsets also seek the partitions of `inputs` that the
    group never committed, to their log start (what auto_offset_reset=earliest means). Patches
    the consumer once; later calls do nothing.

    Faust (0.15.3) drops the records a fetch returns while its flow is stopped (during a
    rebalance) and seeks back to the committed offsets, but aiokafka's seek_to_committed skips a
    partition without a committed offset (or with 0), so its position stays past the dropped
    records. In the fault tests a restarted worker never saw the 30 records of chat[1] (the
    partition stalled until the liveness check restarted the worker), and another skipped the
    first 10 of chat[2] (the skip guard's exit)."""
    if getattr(consumer, "_ms_seeks_fresh", False):
        return
    seek_to_committed = consumer.seek_to_committed  # Faust's ThreadDelegateConsumer: private API

    async def seek_all_to_committed() -> Mapping[Any, int]:
        committed = await seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if not offset and tp.topic in inputs]
        if fresh:
            await consumer._thread.seek_to_beginning(*fresh)
            log.info(
                "never committed, so read from the log start: %s",
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(fresh)),
            )
        return committed

    consumer.seek_to_committed = seek_all_to_committed
    consumer._ms_seeks_fresh = True


def create_app(settings: Settings, health: Health | None = None) -> faust.App:
    health = health if health is not None else Health()
    hide_sasl_secrets()  # aiokafka logs the SASL PLAIN password at DEBUG otherwise
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
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        producer_acks=-1,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        web_enabled=False,
    )
    topics = settings.topics
    sinks = {
        name: raw_topic(app, name, settings.partitions)
        for name in topics.outputs + topics.internal + topics.dead_letters
    }

    def table(name: str, cls: type[faust.Table] = KeyedTable) -> StrKeyed:
        # keys are the raw bytes of the user id / brand; values are JSON
        made = cls(app, name=name, partitions=settings.partitions, key_type=bytes, beacon=app.tables.beacon)
        app.tables.add(made)
        return StrKeyed(cast(TableT, made))

    brand_windows = table("brand-windows")
    ledger = table("bid-ledger", LedgerTable)
    models = TritonModels(settings, TextTokenizer(settings.tokenizer_path, settings.max_seq_len))
    ctx = Context(
        settings=settings,
        models=models,
        labels=load_labels(),
        profiles=table("profiles"),
        replies=ReplyIndex(load_catalogue()),
    )
    book = load_campaigns()
    stats: Counter[str] = Counter()
    liveness = LivenessCheck(settings.liveness_stall_s)
    watched = set(topics.consumed)

    async def bids(records: Any, c: Context) -> list[Outcome]:
        return await handle_bids(records, c, book, ledger)

    async def brands(records: Any, c: Context) -> list[Outcome]:
        return await handle_brand_posts(records, c, brand_windows)

    routes = {
        topics.clickstream: Route("clickstream", ClickEvent, handle_clicks, time_field="ts"),
        topics.chat: Route("chat", ChatMessage, handle_chat, text_field="text", time_field="ts"),
        topics.social: Route("social", SocialPost, handle_social, text_field="text", time_field="ts"),
        topics.bid_requests: Route("bids", BidRequest, bids),
        topics.social_scored: Route("brands", ScoredPost, brands),
    }

    def stop_loudly(why: BaseException) -> None:
        """Exit with EXIT_FATAL so that the supervisor restarts the worker. Faust's clean shutdown
        commits only acknowledged offsets; when it hangs (it can wait on the failed batch for
        minutes), a hard exit follows after FATAL_EXIT_GRACE_S, which is just as safe: whatever
        was not committed is read again by the next worker."""
        health.fatal = why
        os.kill(os.getpid(), signal.SIGTERM)
        asyncio.get_running_loop().call_later(FATAL_EXIT_GRACE_S, _hard_exit)

    async def fail(route: Route, events: Sequence[EventT], exc: Exception) -> None:
        """Something no record can be blamed for (Triton down past the retry budget, Kafka refusing
        our outputs, a bug outside the handlers): stop the worker loudly without acknowledging the
        batch, so a restarted worker processes it again. Never returns."""
        first = meta_of(events[0])
        log.critical(
            "%s: cannot process the batch from %s[%d]@%d (%s); stopping the worker, the batch is not committed",
            route.name,
            first.topic,
            first.partition,
            first.offset,
            redact(repr(exc)),
        )
        stop_loudly(exc)
        await asyncio.Event().wait()

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

    expected: dict[tuple[str, int], int] = {}  # the next offset each input partition should give
    first_taken: dict[tuple[str, int], int] = {}  # the first offset taken since the assignment

    group_offsets = GroupOffsets(settings, app.conf.id)

    def faust_committed(tp: Any) -> int | None:
        """Faust's own record of the committed offset: private (its public API has none), and the
        one that shows records processed but never committed after a rebalance."""
        return cast(int | None, getattr(app.consumer, "_committed_offset", {}).get(tp))

    starts: dict[tuple[str, int], int | None] = {}  # where each assignment must start reading
    lookup: asyncio.Task[None] | None = None

    async def look_up_starts(tps: list[Any]) -> None:
        """The group's committed offsets from the broker, else the log start
        (auto_offset_reset=earliest), for every input partition that has no start yet: one
        request each for all of them, not one per partition on the record path. Faust's own
        record is not enough: it has none before its first seek, which can come after the first
        records."""
        try:
            committed = await asyncio.to_thread(
                group_offsets.committed, [(tp.topic, tp.partition) for tp in tps]
            )
            missing = [tp for tp in tps if committed[tp.topic, tp.partition] is None]
            earliest = await app.consumer.earliest_offsets(*missing) if missing else {}
            for tp in tps:
                key = (tp.topic, tp.partition)
                starts[key] = committed[key] if committed[key] is not None else earliest.get(tp)
        except Exception as exc:  # the broker is away: Faust's view is the best there is
            log.warning("committed offsets unavailable (%r); using the worker's", exc)
            for tp in tps:
                starts[tp.topic, tp.partition] = faust_committed(tp)

    async def assignment_start(tp: Any) -> int | None:
        """Where reading must start after an assignment (looked up with every other partition
        that needs it, once per assignment)."""
        nonlocal lookup
        key = (tp.topic, tp.partition)
        while key not in starts:
            if lookup is None or lookup.done():
                owned = [p for p in app.consumer.assignment() if p.topic in watched]
                need = [p for p in owned if (p.topic, p.partition) not in starts] or [tp]
                lookup = asyncio.ensure_future(look_up_starts(need))
            await asyncio.shield(lookup)
        return starts[key]

    async def check_contiguous(events: Sequence[EventT]) -> None:
        """Exit at once, committing nothing, if the consumer skipped offsets of a partition.

        After a rebalance Faust can deliver a message prefetched from the old position ahead of
        the records between the committed offset and it (faust-streaming#221), and a new worker
        can lose its first records to a seek racing its fetch loop; acking what follows would
        let the commit pass records never processed. A restarted worker reads from the
        committed offset again, so exiting turns a silent loss into duplicates."""
        for event in events:
            tp = event.message.tp
            key = (tp.topic, tp.partition)
            want = expected.get(key)
            offset = event.message.offset
            since = "the last record taken"
            if want is None:  # first record since the assignment
                want = await assignment_start(tp)
                first_taken[key] = offset
                since = "the committed offset or log start"
            if want is not None and offset > want:
                log.critical(
                    "%s[%d]: got offset %d where %d was next (after %s; first taken since the "
                    "assignment: %s): the consumer skipped %d records; exiting without committing "
                    "so that a restarted worker reads them",
                    tp.topic,
                    tp.partition,
                    offset,
                    want,
                    since,
                    first_taken.get(key),
                    offset - want,
                )
                _hard_exit()
            expected[key] = offset + 1

    def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """on_partitions_revoked receiver: (sender, revoked partitions, signal=...)."""
        for tp in args[0] if args else ():
            expected.pop((tp.topic, tp.partition), None)
            first_taken.pop((tp.topic, tp.partition), None)
            starts.pop((tp.topic, tp.partition), None)

    app.on_partitions_revoked.connect(forget_revoked)

    async def hold_flow_until_seek(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """on_rebalance_complete receiver: stop the consumer's flow until Faust has sought the
        stream partitions to their committed offsets.

        Faust 0.15.3 resumes the stream partitions, then seeks, while the flow is still on from
        reading the changelogs. The fetch loop can deliver records from before the seek and go on
        with that stale batch afterwards, and the queues are cleared in between: a worker took
        offset 21, then 49 (tests/integration/test_faults.py, every restart after a SIGKILL).
        Faust resumes the flow itself once the seek is done, and the stale batch is dropped
        because the flow stopped under it."""
        app.consumer.stop_flow()

    app.on_rebalance_complete.connect(hold_flow_until_seek)

    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        seek_fresh_partitions_too(app.consumer, watched)

    app.on_partitions_assigned.connect(on_assigned)

    busy: dict[str, float] = {}  # agent -> when the batch it is inside began
    queued: dict[str, Callable[[], int]] = {}  # agent -> records waiting in its stream's queue

    def diagnose(tp: Any) -> str:
        """Where a stalled partition's records stop, for the liveness log: Faust's fetch state
        (private attributes, read defensively) and the partition's agent."""
        consumer = app.consumer
        active = getattr(consumer, "_active_partitions", None) or set()
        route = routes[tp.topic].name
        began = busy.get(route)
        depth = queued[route]() if route in queued else "?"
        return (
            f"fetching {'on' if tp in active else 'off'}"
            f" (paused {tp in getattr(consumer, '_paused_partitions', ())},"
            f" buffer full {tp in getattr(consumer, '_buffered_partitions', ())}),"
            f" flow {'on' if getattr(consumer, 'flow_active', None) else 'off'},"
            f" read offset {getattr(consumer, '_read_offset', {}).get(tp)};"
            f" {route} agent: {depth} records queued, "
            + (f"in a batch for {time.monotonic() - began:.0f}s" if began else "waiting for records")
        )

    def make_agent(route: Route) -> Any:
        async def agent(stream: StreamT) -> None:
            assert isinstance(stream, faust.Stream)  # take_events is on the class, not the protocol
            queued[route.name] = cast(ChannelT, stream.channel).queue.qsize
            within = settings.bid_batch_within_s if route.name == "bids" else settings.batch_within_s
            async for events in stream.take_events(settings.batch_size, within=within):
                # take_events acks its buffer in a `finally`, also when the loop body raises or is
                # cancelled: a crashed batch would be committed unprocessed. Holding one more
                # reference per message until the outputs are acknowledged prevents that.
                busy[route.name] = time.monotonic()
                for event in events:
                    event.message.incref()
                await check_contiguous(events)
                try:
                    batch = [(meta_of(e), e.value) for e in events]
                    await publish(await process(batch, route, ctx))
                except Exception as exc:
                    await fail(route, events, exc)
                for event in events:
                    event.ack()  # ours; take_events' own ack then makes it final
                stats[f"in:{route.name}"] += len(batch)
                del busy[route.name]

        agent.__name__ = agent.__qualname__ = f"{route.name}_agent"
        return agent

    for source, route in routes.items():
        app.agent(raw_topic(app, source, settings.partitions), name=f"{route.name}-agent")(make_agent(route))

    @app.timer(BRAND_FLUSH_EVERY_S)
    async def close_quiet_brand_windows() -> None:
        await publish(flush_quiet_brands(ctx, brand_windows, ctx.now()))

    @app.timer(STATS_EVERY_S)
    async def report() -> None:
        if stats:
            log.info(
                "processed so far: %s; Triton requests %d, %d of them abandoned at their deadline",
                ", ".join(f"{k}={v}" for k, v in sorted(stats.items())),
                models.calls,
                models.abandoned,
            )

    @app.timer(LIVENESS_EVERY_S)
    async def check_liveness() -> None:
        """Exit loudly, so that the supervisor restarts the worker, if a partition is stuck."""
        consumer = app.consumer
        # Only the agents' own inputs: changelog partitions are read only to recover tables.
        owned = {(tp.topic, tp.partition): tp for tp in consumer.assignment() if tp.topic in watched}
        liveness.forget(set(owned))
        if not owned:
            return
        committed: dict[tuple[str, int], int | None] = {}
        for key, tp in owned.items():
            known = faust_committed(tp)  # never committed: commits stand where this worker started
            committed[key] = first_taken.get(key) if known is None else known
        # Only a partition with neither a commit nor a record taken needs its log start.
        unknown = [
            tp for key, tp in owned.items() if (committed[key] or -1) < 0 and expected.get(key, -1) < 0
        ]
        try:
            # From the broker, bounded: a partition that is never fetched (faust-streaming#629)
            # has no high watermark in the consumer's own fetch state.
            async with asyncio.timeout(LIVENESS_EVERY_S):
                ends = await consumer.highwaters(*owned.values())
                log_starts = await consumer.earliest_offsets(*unknown) if unknown else {}
        except Exception as exc:  # a broker outage is not a stalled consumer: check again later
            log.debug("liveness: no offsets from the broker this time (%r)", exc)
            return
        now = time.monotonic()
        for key, tp in owned.items():
            stall = liveness.observe(
                key, ends.get(tp), log_starts.get(tp), expected.get(key), committed[key], now
            )
            if stall is not None:
                log.critical(
                    "liveness: %s (%s); stopping the worker so that it is restarted", stall, diagnose(tp)
                )
                stop_loudly(WorkerStalled(str(stall)))
                return

    @app.task
    async def wait_for_models() -> None:
        await models.wait_ready(within_s=settings.triton_retry_max_s)
        log.info("models ready on %s", settings.triton_grpc_url)

    async def close_models(sender: Any, *_: Any, **__: Any) -> None:
        await models.close()

    app.on_before_shutdown.connect(close_models)  # type: ignore[arg-type]  # mode's stub omits async receivers

    return app
