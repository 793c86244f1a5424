"""social-scored -> brand-sentiment (every closed window) and brand-alerts (spikes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.handlers.common import Context, Outcome, Output, Record
from streams.schemas import BrandAlert, BrandWindow, ModelRef, ScoredPost, SentimentLabel
from streams.schemas.outputs import ModelShare
from streams.trends import AlertRule, BrandWindowState, ClosedWindow, Source, flush_idle, observe_once

RULE = AlertRule()


def model_key(model: ModelRef) -> str:
    """How a brand window's state counts the versions that scored its posts."""
    return f"{model.name}:{model.version}"


def _shares(counts: Mapping[str, int]) -> list[ModelShare]:
    """Newest version first (a swap's successor leads); one entry per version."""
    shares = []
    for key, posts in counts.items():
        name, _, version = key.rpartition(":")
        shares.append(ModelShare(name=name, version=int(version), posts=posts))
    return sorted(shares, key=lambda m: (m.name, -m.version))


def _majority(shares: list[ModelShare]) -> ModelRef | None:
    """The version that scored most of the window's posts, the newer on a tie."""
    if not shares:
        return None
    top = max(shares, key=lambda m: (m.posts, m.version))
    return ModelRef(name=top.name, version=top.version)


def _outputs(closed: ClosedWindow, ctx: Context) -> list[Outcome]:
    topics = ctx.settings.topics
    window_id = f"brand:{closed.brand}:{int(closed.start.timestamp())}"
    shares = _shares(closed.models)
    model = _majority(shares)
    out: list[Outcome] = [
        Output.of(
            topics.brand_sentiment,
            closed.brand,
            BrandWindow(
                window_id=window_id,
                brand=closed.brand,
                window_start=closed.start,
                window_end=closed.end,
                volume=closed.volume,
                mean_p_positive=round(closed.mean_p_positive, 4),
                share_negative=round(closed.share_negative, 4),
                late_posts=closed.late,
                baseline_share_negative=None
                if closed.baseline_share is None
                else round(closed.baseline_share, 4),
                reasons=closed.reasons,
                model=model,
                models=shares,
            ),
        )
    ]
    if closed.alert:
        assert closed.baseline_share is not None
        out.append(
            Output.of(
                topics.brand_alerts,
                closed.brand,
                BrandAlert(
                    alert_id=f"alert:{window_id}",
                    brand=closed.brand,
                    window_start=closed.start,
                    window_end=closed.end,
                    volume=closed.volume,
                    share_negative=round(closed.share_negative, 4),
                    baseline_share_negative=round(closed.baseline_share, 4),
                    reasons=closed.reasons,
                    model=model,
                ),
            )
        )
    return out


async def handle_brand_posts(
    records: Sequence[Record[ScoredPost]], ctx: Context, windows: MutableMapping[str, Any]
) -> list[Outcome]:
    size = ctx.settings.brand_window_s
    out: list[Outcome] = []
    for record in records:
        post = record.value
        state = BrandWindowState.model_validate(windows.get(post.brand) or {})
        closed = observe_once(
            post.brand,
            state,
            None if post.source is None else Source(post.source.partition, post.source.offset),
            post.ts,
            post.p_positive,
            post.sentiment is SentimentLabel.NEGATIVE,
            size_s=size,
            rule=RULE,
            model=None if post.model is None else model_key(post.model),
        )
        state.arrived = ctx.now().timestamp()  # the brand is not quiet: see flush_idle
        windows[post.brand] = state.model_dump(mode="json")
        if closed is not None:
            out.extend(_outputs(closed, ctx))
    return out


@dataclass(frozen=True)
class Flushed:
    """Windows closed by the quiet-brand timer: publish `outcomes` first, then write each
    brand's new state (`closed_from` -> `state`), so that a worker that dies between the two
    closes the window again, identically, rather than losing it."""

    outcomes: list[Outcome]
    states: dict[str, tuple[dict[str, Any], dict[str, Any]]]  # brand -> (closed_from, state)


def flush_quiet_brands(
    ctx: Context, windows: Mapping[str, Any], now: datetime, owned: Callable[[str], bool]
) -> Flushed:
    """Close the windows whose end (plus grace) has passed with no newer post to close them, of
    the brands `owned` says this worker is active for: the others' windows are closed (and their
    state written) by the worker that owns them. Nothing is written here: see `Flushed`."""
    out: list[Outcome] = []
    states: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for brand in [b for b in windows if owned(b)]:
        before = windows[brand]
        state = BrandWindowState.model_validate(before)
        closed = flush_idle(
            brand,
            state,
            now,
            size_s=ctx.settings.brand_window_s,
            grace_s=ctx.settings.brand_window_grace_s,
            rule=RULE,
        )
        if closed is not None:
            states[brand] = (before, state.model_dump(mode="json"))
            out.extend(_outputs(closed, ctx))
    return Flushed(out, states)


def write_flushed(windows: MutableMapping[str, Any], flushed: Flushed) -> int:
    """After the closed windows are published: write the states the flush left, except where a
    post changed a brand's state meanwhile (that post closed or extended the window itself).
    Returns how many were written."""
    written = 0
    for brand, (closed_from, state) in flushed.states.items():
        if windows.get(brand) == closed_from:
            windows[brand] = state
            written += 1
    return written
