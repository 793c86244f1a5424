"""Tumbling brand windows and spike alerts (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.trends import (
    REMEMBERED_CLOSINGS,
    AlertRule,
    BrandWindowState,
    ClosedWindow,
    Source,
    flush_idle,
    observe,
    observe_once,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RULE = AlertRule(min_volume=4, min_windows=2, min_share=0.4, min_lift=0.2)


def feed(state: BrandWindowState, window: int, negatives: int, total: int) -> list:
    closed = []
    for i in range(total):
        ts = T0 + timedelta(seconds=60 * window + i)
        neg = i < negatives
        c = observe("acme", state, ts, 0.1 if neg else 0.9, neg, size_s=60, rule=RULE)
        if c:
            closed.append(c)
    return closed


def test_windows_close_on_the_next_window_and_summarise() -> None:
    state = BrandWindowState()
    assert feed(state, 0, 1, 5) == []
    [w0] = feed(state, 1, 0, 5)
    assert (w0.volume, w0.share_negative, w0.start, w0.end) == (5, 0.2, T0, T0 + timedelta(seconds=60))
    assert abs(w0.mean_p_positive - (0.1 + 4 * 0.9) / 5) < 1e-9
    assert not w0.alert and "no_baseline_yet(windows=0<2)" in w0.reasons


def test_a_spike_against_the_baseline_raises_one_alert() -> None:
    state = BrandWindowState()
    closed = []
    for window, negatives in enumerate([1, 0, 1, 4, 1]):  # window 3 spikes: 4/5 negative
        closed += feed(state, window, negatives, 5)
    closed += [flush_idle("acme", state, T0 + timedelta(minutes=10), size_s=60, grace_s=30, rule=RULE)]
    assert [c.alert for c in closed] == [False, False, False, True, False]
    spike = closed[3]
    assert spike.share_negative == 0.8 and spike.baseline_share is not None and spike.baseline_share < 0.3


def test_small_windows_never_alert_and_late_posts_are_counted() -> None:
    state = BrandWindowState()
    closed = feed(state, 0, 0, 5) + feed(state, 1, 0, 5) + feed(state, 2, 3, 3) + feed(state, 3, 0, 1)
    assert closed[-1].volume == 3 and closed[-1].share_negative == 1.0 and not closed[-1].alert
    late = observe("acme", state, T0, 0.5, False, size_s=60, rule=RULE)  # window 0 is long closed
    assert late is None and state.late == 1 and state.volume == 2


def test_flush_waits_for_the_grace_period() -> None:
    state = BrandWindowState()
    feed(state, 0, 0, 3)
    assert flush_idle("acme", state, T0 + timedelta(seconds=89), size_s=60, grace_s=30, rule=RULE) is None
    assert flush_idle("acme", state, T0 + timedelta(seconds=90), size_s=60, grace_s=30, rule=RULE) is not None
    assert state.window_start is None


def posts(window: int, total: int, negatives: int) -> list[tuple[datetime, float, bool]]:
    return [
        (T0 + timedelta(seconds=60 * window + i), 0.1 if i < negatives else 0.9, i < negatives)
        for i in range(total)
    ]


def test_a_replayed_post_is_counted_once_and_its_window_is_published_again_identical() -> None:
    """Scored posts from social partition 0 at offsets 0..; the worker dies after offset 7
    (which closed window 0) and the posts from offset 4 on are read again."""
    feed_ = posts(0, 5, 2) + posts(1, 5, 0)
    state = BrandWindowState()
    first: dict[int, ClosedWindow | None] = {}
    for offset, (ts, p, neg) in enumerate(feed_[:8]):
        first[offset] = observe_once("acme", state, Source(0, offset), ts, p, neg, size_s=60, rule=RULE)
    [closer] = [o for o, c in first.items() if c is not None]
    assert closer == 5 and first[5] is not None and first[5].volume == 5
    volume = state.volume
    replayed = {
        offset: observe_once("acme", state, Source(0, offset), ts, p, neg, size_s=60, rule=RULE)
        for offset, (ts, p, neg) in enumerate(feed_[:8])
        if offset >= 4
    }
    assert replayed[5] == first[5]  # the same window again: consumers drop it by window_id
    assert all(replayed[o] is None for o in (4, 6, 7))
    assert state.volume == volume == 3  # offsets 5, 6, 7 of window 1, each once
    for offset, (ts, p, neg) in enumerate(feed_[8:], start=8):  # then new posts count
        observe_once("acme", state, Source(0, offset), ts, p, neg, size_s=60, rule=RULE)
    assert state.volume == 5


def test_sources_are_tracked_per_partition_and_posts_without_one_always_count() -> None:
    state = BrandWindowState()
    ts, p = T0, 0.9
    for source in (Source(0, 10), Source(1, 3), Source(1, 3), Source(0, 9), None, None):
        observe_once("acme", state, source, ts, p, False, size_s=60, rule=RULE)
    assert state.volume == 4 and state.folded == {"0": 10, "1": 3}


def test_only_the_latest_closings_are_remembered() -> None:
    state = BrandWindowState()
    offset = 0
    for window in range(REMEMBERED_CLOSINGS + 3):
        for ts, p, neg in posts(window, 2, 1):
            observe_once("acme", state, Source(0, offset), ts, p, neg, size_s=60, rule=RULE)
            offset += 1
    assert len(state.closings) == REMEMBERED_CLOSINGS
    assert BrandWindowState.model_validate(state.model_dump(mode="json")) == state  # table round trip


def test_a_post_for_a_flushed_window_never_reopens_it() -> None:
    """The timer closed window 0; a post of window 0 that comes after counts, late, in window 1,
    so window 0's id is published once."""
    state = BrandWindowState()
    feed(state, 0, 1, 4)
    first = flush_idle("acme", state, T0 + timedelta(minutes=5), size_s=60, grace_s=30, rule=RULE)
    assert first is not None and first.volume == 4
    assert observe("acme", state, T0 + timedelta(seconds=50), 0.9, False, size_s=60, rule=RULE) is None
    assert state.window_start == int((T0 + timedelta(seconds=60)).timestamp()) and state.late == 1
    closed = feed(state, 2, 0, 1)
    assert [(c.start, c.volume, c.late) for c in closed] == [(T0 + timedelta(seconds=60), 1, 1)]


def test_a_replayed_feed_waits_for_the_brand_to_be_quiet() -> None:
    """Event times long past: the window's end is behind the clock at once, but it closes only
    when no post has arrived for the grace period."""
    state = BrandWindowState()
    feed(state, 0, 0, 3)
    now = T0 + timedelta(hours=1)
    state.arrived = (now - timedelta(seconds=10)).timestamp()
    assert flush_idle("acme", state, now, size_s=60, grace_s=30, rule=RULE) is None
    later = now + timedelta(seconds=20)
    assert flush_idle("acme", state, later, size_s=60, grace_s=30, rule=RULE) is not None
