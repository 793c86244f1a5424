"""Brand sentiment in tumbling event-time windows, and spike alerts. Pure logic, no Kafka.

Each brand keeps one open window. A post whose timestamp falls in a later window closes the
open one: its summary (volume, mean P(positive), share negative) is published, compared with
the brand's baseline (an exponentially weighted mean of the negative share of its earlier
windows), and an alert is raised when the negative share spikes above that baseline. Windows
are closed by the next post of the same brand, so the result does not depend on batching or on
wall-clock time; a quiet brand's last window is closed by `flush_idle` from a timer.
A late post (for a window already closed) is counted in the open window and flagged in its
summary rather than dropped.

Replays count once. Delivery is at-least-once twice over: the social agent may score a post
again after a restart (a second `social-scored` record for it), and the brand agent may read
`social-scored` records again that its table, restored from the changelog, already holds.
Every scored post names the `social` partition and offset it came from, and each brand keeps
the highest source offset it folded in per partition (one agent processes a partition in
order, and so writes its posts in order). A post at or below that mark is a replay: it changes
nothing, and if it was the post that closed a window, that window is published again,
identical (its output may have been lost with the worker), from the last few closings the
state remembers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

BASELINE_ALPHA = 0.3  # weight of the newest closed window in the baseline


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_volume: int = Field(default=5, ge=1, description="Windows with fewer posts never alert.")
    min_windows: int = Field(default=2, ge=1, description="Closed windows needed before a baseline counts.")
    min_share: float = Field(default=0.4, ge=0, le=1, description="Negative share must reach at least this.")
    min_lift: float = Field(default=0.2, ge=0, le=1, description="...and exceed the baseline by this much.")


class ClosedWindow(BaseModel):
    model_config = ConfigDict(frozen=True)

    brand: str
    start: datetime
    end: datetime
    volume: int
    mean_p_positive: float
    share_negative: float
    late: int
    baseline_share: float | None  # the baseline before this window was folded in
    alert: bool
    reasons: list[str]
    models: dict[str, int] = {}  # "name:version" -> posts it scored in this window


class Closing(BaseModel):
    """A window and the post that closed it (`<source partition>@<source offset>`)."""

    by: str
    window: ClosedWindow


REMEMBERED_CLOSINGS = 8  # per brand: more windows than close between two commits, even in a fast replay


class BrandWindowState(BaseModel):
    """One brand's open window and its baseline (stored in a table as a JSON dict)."""

    model_config = ConfigDict(extra="ignore")

    window_start: int | None = None  # epoch seconds
    volume: int = 0
    negative: int = 0
    sum_p_positive: float = 0.0
    late: int = 0
    baseline_share: float | None = None
    windows_closed: int = 0
    closed_start: int | None = None  # start of the last window closed (epoch seconds)
    models: dict[str, int] = {}  # the open window's "name:version" -> posts it scored
    arrived: float | None = Field(
        default=None, description="wall-clock epoch seconds when the brand's last post was counted"
    )
    folded: dict[str, int] = Field(
        default_factory=dict, description="social partition -> highest source offset folded in"
    )
    closings: list[Closing] = Field(default_factory=list, description="the latest, oldest first")


@dataclass(frozen=True)
class Source:
    """Where a scored post came from on the `social` topic."""

    partition: int
    offset: int


def window_of(ts: datetime, size_s: int) -> int:
    epoch = int(ts.timestamp())
    return epoch - epoch % size_s


def _close(brand: str, state: BrandWindowState, size_s: int, rule: AlertRule) -> ClosedWindow:
    assert state.window_start is not None and state.volume > 0
    share = state.negative / state.volume
    baseline = state.baseline_share if state.windows_closed >= rule.min_windows else None
    reasons = [f"volume={state.volume}", f"share_negative={share:.2f}"]
    alert = False
    if baseline is None:
        reasons.append(f"no_baseline_yet(windows={state.windows_closed}<{rule.min_windows})")
    else:
        reasons.append(f"baseline={baseline:.2f}")
        alert = (
            state.volume >= rule.min_volume and share >= rule.min_share and share - baseline >= rule.min_lift
        )
        if alert:
            reasons.append(f"spike:share-baseline={share - baseline:.2f}>={rule.min_lift}")
    closed = ClosedWindow(
        brand=brand,
        start=datetime.fromtimestamp(state.window_start, UTC),
        end=datetime.fromtimestamp(state.window_start + size_s, UTC),
        volume=state.volume,
        mean_p_positive=state.sum_p_positive / state.volume,
        share_negative=share,
        late=state.late,
        baseline_share=baseline,
        alert=alert,
        reasons=reasons,
        models=dict(state.models),
    )
    state.baseline_share = (
        share
        if state.baseline_share is None
        else (1 - BASELINE_ALPHA) * state.baseline_share + BASELINE_ALPHA * share
    )
    state.windows_closed += 1
    state.closed_start = state.window_start
    state.window_start, state.volume, state.negative, state.sum_p_positive, state.late = None, 0, 0, 0.0, 0
    state.models = {}
    return closed


def observe(
    brand: str,
    state: BrandWindowState,
    ts: datetime,
    p_positive: float,
    negative: bool,
    *,
    size_s: int,
    rule: AlertRule,
    model: str | None = None,
) -> ClosedWindow | None:
    """Count one scored post (`model`: the "name:version" that scored it); return the window it
    closed, if any."""
    start = window_of(ts, size_s)
    closed = None
    if state.window_start is not None and start > state.window_start:
        closed = _close(brand, state, size_s, rule)
    if state.window_start is None:
        # never reopen a closed window (its id is published): a post for one counts in the next
        after = None if state.closed_start is None else state.closed_start + size_s
        state.window_start = start if after is None else max(start, after)
    if start < state.window_start:
        state.late += 1  # its own window is closed already: count it where it can still count
    state.volume += 1
    state.negative += int(negative)
    state.sum_p_positive += p_positive
    if model is not None:
        state.models = {**state.models, model: state.models.get(model, 0) + 1}
    return closed


def flush_idle(
    brand: str, state: BrandWindowState, now: datetime, *, size_s: int, grace_s: int, rule: AlertRule
) -> ClosedWindow | None:
    """Close the open window once, in wall-clock time, both its end and the brand's last post
    are a grace period behind: a replayed feed (event times in the past) keeps its windows open
    while its posts still arrive, and they close by the next post as live ones do."""
    if state.window_start is None or state.volume == 0:
        return None
    quiet_since = max(state.window_start + size_s, state.arrived or 0.0)
    if now.timestamp() < quiet_since + grace_s:
        return None
    return _close(brand, state, size_s, rule)


def observe_once(
    brand: str,
    state: BrandWindowState,
    source: Source | None,
    ts: datetime,
    p_positive: float,
    negative: bool,
    *,
    size_s: int,
    rule: AlertRule,
    model: str | None = None,
) -> ClosedWindow | None:
    """`observe`, unless the post was folded in already (see the module's docstring): then the
    window it closed the first time, if it closed one and that is still remembered, else None.
    A post without a source (written before posts carried one) is always counted."""
    if source is None:
        return observe(brand, state, ts, p_positive, negative, size_s=size_s, rule=rule, model=model)
    part, by = str(source.partition), f"{source.partition}@{source.offset}"
    if source.offset <= state.folded.get(part, -1):
        return next((c.window for c in state.closings if c.by == by), None)
    closed = observe(brand, state, ts, p_positive, negative, size_s=size_s, rule=rule, model=model)
    state.folded[part] = source.offset
    if closed is not None:
        state.closings = [*state.closings, Closing(by=by, window=closed)][-REMEMBERED_CLOSINGS:]
    return closed
