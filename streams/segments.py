"""Segment rules, in one readable place.

Each rule looks at the user's profile and the current event time and returns a reason code
when the user is in the segment, or None. Reason codes travel with every segment update so a
marketer sees why. Thresholds are named constants here, not scattered through the code.

| segment          | rule                                                                          |
|------------------|-------------------------------------------------------------------------------|
| new_visitor      | no purchase yet and at most 5 events/texts                                    |
| high_intent      | items in the cart, touched within the last 30 minutes                         |
| cart_abandoner   | items in the cart, untouched for 30 minutes or more, no purchase since        |
| churn_risk       | has purchased, but not for 30 days or more                                    |
| bargain_hunter   | at least 2 searches for deals (sale, coupon, promo ...)                       |
| brand_advocate   | sentiment of the user's texts (EWMA of P(positive)) >= 0.75                   |
| detractor        | sentiment of the user's texts <= 0.25                                         |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from streams.profile import Profile

NEW_VISITOR_MAX_EVENTS = 5
CART_ABANDON_AFTER = timedelta(minutes=30)
CHURN_AFTER = timedelta(days=30)
BARGAIN_MIN_DEAL_SEARCHES = 2
ADVOCATE_MIN_SENTIMENT = 0.75
DETRACTOR_MAX_SENTIMENT = 0.25

Rule = Callable[[Profile, datetime], str | None]


def _new_visitor(p: Profile, now: datetime) -> str | None:
    if p.purchases == 0 and p.events + p.texts <= NEW_VISITOR_MAX_EVENTS:
        return f"events<={NEW_VISITOR_MAX_EVENTS}_no_purchase"
    return None


def _cart_idle(p: Profile, now: datetime) -> timedelta | None:
    if not p.cart or p.last_cart_change is None:
        return None
    return now - p.last_cart_change


def _high_intent(p: Profile, now: datetime) -> str | None:
    idle = _cart_idle(p, now)
    if idle is not None and idle < CART_ABANDON_AFTER:
        return f"cart_items={len(p.cart)}"
    return None


def _cart_abandoner(p: Profile, now: datetime) -> str | None:
    idle = _cart_idle(p, now)
    if idle is not None and idle >= CART_ABANDON_AFTER:
        return f"cart_items={len(p.cart)}_idle_min={int(idle.total_seconds() // 60)}"
    return None


def _churn_risk(p: Profile, now: datetime) -> str | None:
    if p.last_purchase is not None and now - p.last_purchase >= CHURN_AFTER:
        return f"days_since_purchase={(now - p.last_purchase).days}"
    return None


def _bargain_hunter(p: Profile, now: datetime) -> str | None:
    if p.deal_searches >= BARGAIN_MIN_DEAL_SEARCHES:
        return f"deal_searches={p.deal_searches}"
    return None


def _brand_advocate(p: Profile, now: datetime) -> str | None:
    if p.sentiment is not None and p.sentiment >= ADVOCATE_MIN_SENTIMENT:
        return f"sentiment={p.sentiment:.2f}>={ADVOCATE_MIN_SENTIMENT}"
    return None


def _detractor(p: Profile, now: datetime) -> str | None:
    if p.sentiment is not None and p.sentiment <= DETRACTOR_MAX_SENTIMENT:
        return f"sentiment={p.sentiment:.2f}<={DETRACTOR_MAX_SENTIMENT}"
    return None


RULES: dict[str, Rule] = {
    "new_visitor": _new_visitor,
    "high_intent": _high_intent,
    "cart_abandoner": _cart_abandoner,
    "churn_risk": _churn_risk,
    "bargain_hunter": _bargain_hunter,
    "brand_advocate": _brand_advocate,
    "detractor": _detractor,
}


@dataclass(frozen=True)
class SegmentChange:
    segments: list[str]
    entered: list[str]
    exited: list[str]
    reasons: list[str]


def evaluate(profile: Profile, now: datetime) -> SegmentChange | None:
    """Recompute the user's segments at event time `now`; None when they did not change."""
    hits = {name: rule(profile, now) for name, rule in RULES.items()}
    current = sorted(name for name, reason in hits.items() if reason is not None)
    before = set(profile.segments)
    if set(current) == before:
        return None
    entered = sorted(set(current) - before)
    exited = sorted(before - set(current))
    reasons = [f"enter:{name}:{hits[name]}" for name in entered] + [f"exit:{name}" for name in exited]
    return SegmentChange(segments=current, entered=entered, exited=exited, reasons=reasons)
