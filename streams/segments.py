"""Segment rules, in one readable place.

Each segment says when a user enters it and, for a member, what keeps them in; each test returns
a reason code when it holds, or None. Reason codes travel with every segment update so a
marketer sees why. Thresholds are named constants here, not scattered through the code.

| segment        | a user enters when                                  | a member stays while             |
|----------------|-----------------------------------------------------|----------------------------------|
| new_visitor    | no purchase yet and at most 5 events/texts          | the same holds                   |
| high_intent    | items in the cart, touched within the last 30 min   | the same holds                   |
| cart_abandoner | items in the cart, untouched for 30 min or more, no purchase since | the same holds    |
| churn_risk     | has purchased, but not for 30 days or more          | the same holds                   |
| bargain_hunter | at least 2 searches for deals (sale, coupon, ...)   | the same holds                   |
| brand_advocate | sentiment (EWMA of P(positive) of their texts) >= 0.75 | sentiment >= 0.60; and for 1 h at least, unless they become a detractor |
| detractor      | sentiment <= 0.25                                   | sentiment <= 0.40; and for 1 h at least, unless they become a brand_advocate |

The sentiment segments have hysteresis and a minimum dwell because the EWMA moves by 0.3 x
(P(positive) - EWMA) per text: with one threshold a user at 0.75 crossed it with every other
post, in and out within seconds. The 0.15 band absorbs a neutral post (0.75 -> 0.675) and the
dwell absorbs one outlier (a negative post takes 0.76 to 0.55); a member leaves once the exit
condition still holds after the dwell, or at once for the opposite segment, which is the change
that must not wait. Dwell is counted in event time from the entering event, so a replay gives
the same updates; `Profile.segment_since` keeps when each current segment was entered.
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
ADVOCATE_ENTER_SENTIMENT = 0.75
ADVOCATE_STAY_SENTIMENT = 0.60
DETRACTOR_ENTER_SENTIMENT = 0.25
DETRACTOR_STAY_SENTIMENT = 0.40
SENTIMENT_MIN_DWELL = timedelta(hours=1)

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


def _sentiment_at_least(threshold: float) -> Rule:
    def rule(p: Profile, now: datetime) -> str | None:
        if p.sentiment is not None and p.sentiment >= threshold:
            return f"sentiment={p.sentiment:.2f}>={threshold}"
        return None

    return rule


def _sentiment_at_most(threshold: float) -> Rule:
    def rule(p: Profile, now: datetime) -> str | None:
        if p.sentiment is not None and p.sentiment <= threshold:
            return f"sentiment={p.sentiment:.2f}<={threshold}"
        return None

    return rule


@dataclass(frozen=True)
class Segment:
    enter: Rule  # a user outside the segment joins it when this holds
    stay: Rule | None = None  # a member stays while this holds (None: while `enter` holds)
    min_dwell: timedelta = timedelta(0)  # event time a member stays at least, whatever `stay` says,
    opposite: str | None = None  # ... unless they enter this segment


RULES: dict[str, Segment] = {
    "new_visitor": Segment(_new_visitor),
    "high_intent": Segment(_high_intent),
    "cart_abandoner": Segment(_cart_abandoner),
    "churn_risk": Segment(_churn_risk),
    "bargain_hunter": Segment(_bargain_hunter),
    "brand_advocate": Segment(
        _sentiment_at_least(ADVOCATE_ENTER_SENTIMENT),
        stay=_sentiment_at_least(ADVOCATE_STAY_SENTIMENT),
        min_dwell=SENTIMENT_MIN_DWELL,
        opposite="detractor",
    ),
    "detractor": Segment(
        _sentiment_at_most(DETRACTOR_ENTER_SENTIMENT),
        stay=_sentiment_at_most(DETRACTOR_STAY_SENTIMENT),
        min_dwell=SENTIMENT_MIN_DWELL,
        opposite="brand_advocate",
    ),
}


@dataclass(frozen=True)
class SegmentChange:
    segments: list[str]
    entered: list[str]
    exited: list[str]
    reasons: list[str]
    since: dict[str, datetime]  # when each of `segments` was entered (event time)


def evaluate(profile: Profile, now: datetime) -> SegmentChange | None:
    """Recompute the user's segments at event time `now`; None when they did not change."""
    before = set(profile.segments)
    hits = {
        name: (seg.stay or seg.enter)(profile, now) if name in before else seg.enter(profile, now)
        for name, seg in RULES.items()
    }
    holding = {name for name, reason in hits.items() if reason is not None}
    dwelling = {
        name
        for name in before - holding
        if name in RULES and RULES[name].opposite not in holding and _dwelling(profile, name, now)
    }
    current = holding | dwelling
    if current == before:
        return None
    entered = sorted(current - before)
    exited = sorted(before - current)
    since = {name: t for name, t in profile.segment_since.items() if name in current} | dict.fromkeys(
        entered, now
    )
    reasons = [f"enter:{name}:{hits[name]}" for name in entered] + [f"exit:{name}" for name in exited]
    return SegmentChange(sorted(current), entered, exited, reasons, since)


def _dwelling(profile: Profile, name: str, now: datetime) -> bool:
    """Whether a member is still inside the segment's minimum dwell. A member whose entry time is
    not known (state from before dwell times were kept) has served it."""
    entered = profile.segment_since.get(name)
    return entered is not None and now - entered < RULES[name].min_dwell
