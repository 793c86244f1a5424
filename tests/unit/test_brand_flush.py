"""The brand-flush timer closes only the windows of brands this worker is active for: its
brand-windows table also holds standby copies of the other workers' brands (Faust's default
table_standby_replicas=1), and closing those would close a window twice and write to a
changelog partition another worker owns."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from streams.faust_compat import active_partitions
from streams.handlers.common import Context
from streams.handlers.trends import flush_quiet_brands, write_flushed
from streams.publisher import Publisher
from streams.replies import Catalogue, Reply, ReplyIndex
from streams.tables import key_partition
from streams.timers import flush_owned_brands
from streams.trends import BrandWindowState
from tests.fakes import FakeModels
from tests.unit.faust_memory import PARTITIONS, replay_changelog, two_workers, worker_settings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
QUIET = BrandWindowState(
    window_start=int((NOW - timedelta(minutes=10)).timestamp()), volume=5, negative=1, sum_p_positive=3.5
)


def context(tmp_path: Path) -> Context:
    return Context(
        settings=worker_settings(tmp_path),
        models=FakeModels(),
        profiles={},
        replies=ReplyIndex(Catalogue(replies=[Reply(id="greet", intent="greeting", text="Hello!")])),
        now=lambda: NOW,
    )


class Sink:
    def __init__(self) -> None:
        self.sent: list[bytes | None] = []

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, headers: Any = None) -> Any:
        self.sent.append(key)
        return _delivered()


async def _delivered() -> None:
    return None


def brand_in(partitions: frozenset[int]) -> str:
    return next(
        b for b in (f"brand-{i}" for i in range(100)) if key_partition(b.encode(), PARTITIONS) in partitions
    )


def test_only_owned_brands_are_flushed(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    windows = {"ours": QUIET.model_dump(), "theirs": QUIET.model_dump()}
    flushed = flush_quiet_brands(ctx, windows, NOW, owned=lambda brand: brand == "ours")
    assert {o.key for o in flushed.outcomes} == {"ours"} and set(flushed.states) == {"ours"}
    assert write_flushed(windows, flushed) == 1
    assert windows["theirs"] == QUIET.model_dump()  # untouched: not even written back


async def test_the_closed_window_is_published_before_its_state_is_written(tmp_path: Path) -> None:
    """A worker that dies between the two closes the window again (same id, same content)
    rather than losing it: while the window is being published the table still holds it open."""
    ctx = context(tmp_path)
    windows: dict[str, Any] = {"ours": QUIET.model_dump(mode="json")}
    seen_while_publishing: list[Any] = []

    class Watching(Sink):
        async def send(
            self, *, key: bytes | None = None, value: bytes | None = None, headers: Any = None
        ) -> Any:
            seen_while_publishing.append(dict(windows["ours"]))
            return await super().send(key=key, value=value, headers=headers)

    sink = Watching()
    flushed = flush_quiet_brands(ctx, windows, NOW, owned=lambda brand: True)
    await Publisher({ctx.settings.topics.brand_sentiment: sink}, Counter()).publish(flushed.outcomes)
    write_flushed(windows, flushed)
    assert seen_while_publishing == [QUIET.model_dump(mode="json")]
    assert BrandWindowState.model_validate(windows["ours"]).window_start is None


def test_a_post_counted_meanwhile_keeps_its_state(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    windows: dict[str, Any] = {"ours": QUIET.model_dump(mode="json")}
    flushed = flush_quiet_brands(ctx, windows, NOW, owned=lambda brand: True)
    changed = {**windows["ours"], "volume": 6}
    windows["ours"] = changed  # the brand agent counted a post while the window was published
    assert write_flushed(windows, flushed) == 0 and windows["ours"] == changed


async def test_a_standby_brand_is_not_flushed_by_the_timer(tmp_path: Path) -> None:
    apps, tables = two_workers(tmp_path)
    a = apps["a"]
    ctx = context(tmp_path)
    topic = ctx.settings.topics.social_scored
    ours, theirs = brand_in(active_partitions(a, topic)), brand_in(active_partitions(apps["b"], topic))
    table = a.tables["brand-windows"]
    state = orjson.dumps(QUIET.model_dump())
    await replay_changelog(
        a, table, [(key_partition(b.encode(), PARTITIONS), b.encode(), state) for b in (ours, theirs)]
    )
    assert sorted(tables["a"].brand_windows) == sorted([ours, theirs])  # the standby copy is there

    sinks = {t: Sink() for t in (ctx.settings.topics.brand_sentiment, ctx.settings.topics.brand_alerts)}
    await flush_owned_brands(a, ctx, tables["a"].brand_windows, Publisher(sinks, Counter()))

    assert sinks[ctx.settings.topics.brand_sentiment].sent == [ours.encode()]
    pending: Any = a.producer.buffer.pending  # table writes wait here for the producer
    written = [pending.get_nowait().message for _ in range(pending.qsize())]
    assert [(m.key, m.partition) for m in written] == [
        (ours.encode(), key_partition(ours.encode(), PARTITIONS))
    ]
    assert BrandWindowState.model_validate(tables["a"].brand_windows[theirs]) == QUIET


async def test_nothing_is_flushed_while_a_rebalance_moves_the_partitions(tmp_path: Path) -> None:
    apps, tables = two_workers(tmp_path)
    a = apps["a"]
    ctx = context(tmp_path)
    ours = brand_in(active_partitions(a, ctx.settings.topics.social_scored))
    tables["a"].brand_windows[ours] = QUIET.model_dump()
    sink = Sink()
    publisher = Publisher({ctx.settings.topics.brand_sentiment: sink}, Counter())
    a.on_rebalance_start()
    await flush_owned_brands(a, ctx, tables["a"].brand_windows, publisher)
    assert sink.sent == []
    a.on_rebalance_end()
    await flush_owned_brands(a, ctx, tables["a"].brand_windows, publisher)
    assert sink.sent == [ours.encode()]
