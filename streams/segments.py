"""Segment rules, in one readable place. Each rule returns a reason code when the user is in the
segment, or None. Reason codes travel with every segment update so a marketer sees why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from streams.profile import Profile

NEW_VISITOR_MAX_EVENTS = 5
ADVOCATE_MIN_SENTIMENT = 0.75
DETRACTOR_MAX_SENTIMENT = 0.25


def _new_visitor(p: Profile) -> str | None:
    if p.purchases == 0 and p.events + p.texts <= NEW_VISITOR_MAX_EVENTS:
        return f"events<={NEW_VISITOR_MAX_EVENTS}_no_purchase"
    return None


def _high_intent(p: Profile) -> str | None:
    return f"cart_items={len(p.cart)}" if p.cart else None


def _brand_advocate(p: Profile) -> str | None:
    if p.sentiment is not None and p.sentiment >= ADVOCATE_MIN_SENTIMENT:
        return f"sentiment={p.sentiment:.2f}>={ADVOCATE_MIN_SENTIMENT}"
    return None


def _detractor(p: Profile) -> str | None:
    if p.sentiment is not None and p.sentiment <= DETRACTOR_MAX_SENTIMENT:
        return f"sentiment={p.sentiment:.2f}<={DETRACTOR_MAX_SENTIMENT}"
    return None


RULES: dict[str, Callable[[Profile], str | None]] = {
    "new_visitor": _new_visitor,
    "high_intent": _high_intent,
    "brand_advocate": _brand_advocate,
    "detractor": _detractor,
}


@dataclass(frozen=True)
class SegmentChange:
    segments: list[str]
    entered: list[str]
    exited: list[str]
    reasons: list[str]


def evaluate(profile: Profile) -> SegmentChange | None:
    """Recompute the user's segments; None when they did not change."""
    hits = {name: rule(profile) for name, rule in RULES.items()}
    now = sorted(name for name, reason in hits.items() if reason is not None)
    before = set(profile.segments)
    if set(now) == before:
        return None
    entered = sorted(set(now) - before)
    exited = sorted(before - set(now))
    reasons = [f"enter:{name}:{hits[name]}" for name in entered] + [f"exit:{name}" for name in exited]
    return SegmentChange(segments=now, entered=entered, exited=exited, reasons=reasons)
