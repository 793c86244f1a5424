"""Expiry of per-user state (`streams.housekeeping`): what the sweep deletes and keeps, and a long
synthetic run whose tables stay bounded while the number of users ever seen keeps growing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from streams.campaigns import Campaign, CampaignBook, Creative, FrequencyCap
from streams.dlq import RecordMeta
from streams.handlers.common import Record
from streams.handlers.segments import handle_clicks
from streams.housekeeping import Sweeper, Swept, sweep
from streams.pacing import Ledger
from streams.profile import MAX_CATEGORIES, Profile
from streams.schemas import ClickEvent
from streams.settings import Settings
from tests.unit.test_handlers import make_ctx

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def capped(cid: str, window_s: int | None) -> Campaign:
    return Campaign(
        id=cid,
        adomain=[f"{cid}.example"],
        value_per_conversion=0.02,
        max_cpm=5.0,
        daily_budget=1e9,
        frequency_cap=None if window_s is None else FrequencyCap(impressions=10**6, window_s=window_s),
        creatives=[Creative(crid=f"{cid}-1", format="banner", w=300, h=250)],
    )


BOOK = CampaignBook(campaigns=[capped("hourly", 3600), capped("weekly", 7 * 86400), capped("open", None)])


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def swept(profiles: dict[str, Any], ledger: dict[str, Any], partitions: set[int] | None = None) -> Swept:
    return sweep(
        profiles,
        ledger,
        now=NOW,
        settings=Settings(),
        book=BOOK,
        partitions={0, 1} if partitions is None else partitions,
        profile_partition=lambda user: int(user.rsplit("-", 1)[1]),  # "u<n>-<partition>"
    )


def test_profiles_idle_past_the_ttl_go_and_the_others_stay() -> None:
    ttl = timedelta(seconds=Settings().profile_ttl_s)
    assert ttl == timedelta(days=90)
    profiles: dict[str, Any] = {
        "old-0": {"last_seen": (NOW - ttl - timedelta(seconds=1)).isoformat()},
        "edge-0": {"last_seen": (NOW - ttl).isoformat()},  # exactly the TTL: not yet
        "recent-1": {"last_seen": (NOW - DAY).isoformat()},
        "other-offset-1": {"last_seen": "2026-01-01T00:00:00+05:00"},  # any offset is compared in UTC
        "undated-0": {"events": 3},  # not written by the handlers: cannot be judged, kept
        "elsewhere-2": {"last_seen": "2020-01-01T00:00:00Z"},  # a partition this worker is not active for
    }
    assert swept(profiles, {}) == Swept(profiles=2)
    assert sorted(profiles) == ["edge-0", "elsewhere-2", "recent-1", "undated-0"]


def test_dead_ledger_entries_go_and_live_ones_are_trimmed_or_kept() -> None:
    t = ms(NOW)
    ledger: dict[str, Any] = {
        "p0/spend/hourly": {"day": "2026-11-22", "micros": 5, "bids": 1},  # yesterday
        "p0/spend/weekly": {"day": "2026-11-23", "micros": 5, "bids": 1},  # today
        "p0/applied/bid-requests": {"offset": 41},  # the replay watermark: always kept
        # hourly: one bid time inside the hour, one outside; weekly: inside; open has no cap and
        # gone was removed from the book: their times count for nothing
        "p1/freq/u1": {"hourly": [t - 3_601_000, t - 60_000], "weekly": [t - 86_400_000]},
        "p1/freq/u2": {"open": [t], "gone": [t], "hourly": [t - 7_200_000]},  # nothing left
        "p1/freq/u3": {"weekly": [t - 1000]},  # nothing to trim
        "p2/spend/hourly": {"day": "2026-01-01", "micros": 5, "bids": 1},  # not this worker's
    }
    assert swept({}, ledger) == Swept(caps=1, caps_trimmed=1, spend=1)
    assert ledger == {
        "p0/spend/weekly": {"day": "2026-11-23", "micros": 5, "bids": 1},
        "p0/applied/bid-requests": {"offset": 41},
        "p1/freq/u1": {"hourly": [t - 60_000], "weekly": [t - 86_400_000]},
        "p1/freq/u3": {"weekly": [t - 1000]},
        "p2/spend/hourly": {"day": "2026-01-01", "micros": 5, "bids": 1},
    }


def test_the_sweeper_covers_every_key_a_slice_at_a_time_and_new_keys_in_the_next_pass() -> None:
    old = {"last_seen": "2020-01-01T00:00:00Z"}
    profiles: dict[str, Any] = {f"u{i}-0": dict(old) for i in range(10)}
    ledger: dict[str, Any] = {}
    sweeper = Sweeper(
        profiles, ledger, settings=Settings(), book=BOOK, profile_partition=lambda u: 0, slice_keys=4
    )
    assert [sweeper.step(NOW, {0}).profiles for _ in range(3)] == [4, 4, 2]
    profiles["late-0"] = dict(old)  # written after the pass's snapshot
    assert sweeper.step(NOW, {0}).profiles == 1 and profiles == {}


def test_a_ttl_inside_churn_risk_s_window_is_refused() -> None:
    with pytest.raises(ValidationError, match="profile_ttl_s"):
        Settings(profile_ttl_s=30 * 86400)


def test_a_profile_keeps_its_most_counted_categories_only() -> None:
    profile = Profile()

    def view(category: str) -> None:
        event = ClickEvent(
            schema_version=1,
            event_id="e",
            user_id="u",
            session_id="s",
            ts=NOW,
            type="product_view",
            product_id=1,
            category=category,
        )
        profile.apply_click(event, keep_items=20)

    for _ in range(3):
        view("dairy")
    for n in range(MAX_CATEGORIES + 20):
        view(f"c{n:03d}")
    assert len(profile.categories) == MAX_CATEGORIES
    assert profile.categories["dairy"] == 3 and profile.top_categories(1) == ["dairy"]
    assert f"c{MAX_CATEGORIES + 19:03d}" in profile.categories  # the newest always gets in


# --- a long run ----------------------------------------------------------------------------------

DAYS = 250
EVENTS = 200_000  # half clicks through the segment handler, half bids charged to the ledger
COHORT = 100  # new users a day, each active for ACTIVE_DAYS and never again
ACTIVE_DAYS = 3
HEAVY = [f"heavy{i}" for i in range(5)]  # active every day, over hundreds of categories
PARTITIONS = 4


def user_partition(user: str) -> int:
    return sum(user.encode()) % PARTITIONS


async def test_state_stays_bounded_over_a_long_run_with_ever_new_users() -> None:
    """250 simulated days, 200,000 events, 25,000 users who each come for 3 days and leave, and 5
    who never leave. With the sweep called once a simulated day (a slice of 4,000 keys per table),
    the profiles stay near the 93 days of cohorts the TTL keeps (9,300 users, not 25,000), the cap
    entries near the weekly cap window's 10 days, and the spend entries at one per campaign and
    partition; a heavy user's profile and cap entry stay small however long they stay. Without
    expiry the profiles and cap entries grow with the users ever seen."""
    rng = random.Random(7)
    ctx = make_ctx()
    ctx.settings = Settings(partitions=PARTITIONS)
    ledger_state: dict[str, Any] = {}
    sweeper = Sweeper(
        ctx.profiles,
        ledger_state,
        settings=ctx.settings,
        book=BOOK,
        profile_partition=user_partition,
        slice_keys=4_000,
    )
    start = NOW - DAYS * DAY
    per_day = EVENTS // DAYS // 2
    seen: set[str] = set()
    peak_profiles = peak_caps = peak_spend = peak_bytes = 0
    offset = 0
    for day in range(DAYS):
        cohorts = range(max(0, day - ACTIVE_DAYS + 1), day + 1)
        users = [f"d{d}u{i}" for d in cohorts for i in range(COHORT)] + HEAVY
        batch: list[Record[ClickEvent]] = []
        ledger = Ledger(ledger_state, partitions=PARTITIONS)
        for n in range(per_day):
            at = start + day * DAY + timedelta(seconds=n * 86_400 // per_day)
            user = rng.choice(users)
            seen.add(user)
            heavy = user in HEAVY
            event = ClickEvent(
                schema_version=1,
                event_id=f"e{offset}",
                user_id=user,
                session_id="s",
                ts=at,
                type="add_to_cart" if n % 3 else "product_view",
                product_id=rng.randrange(1, 50_000),
                # 64-character names (the schema's limit), hundreds of them for the heavy users
                category=f"{rng.randrange(1000 if heavy else 20):064d}",
            )
            batch.append(Record(RecordMeta("clickstream", user_partition(user), offset, None), None, event))
            offset += 1
            campaign = BOOK.campaigns[n % 3]
            ledger.charge(campaign, user, user_partition(user), at, cost=1000)
            if len(batch) == 32:
                await handle_clicks(batch, ctx)
                batch = []
        if batch:
            await handle_clicks(batch, ctx)
        ledger.commit()
        sweeper.step(start + (day + 1) * DAY, set(range(PARTITIONS)))
        caps = sum(1 for k in ledger_state if "/freq/" in k)
        spend = sum(1 for k in ledger_state if "/spend/" in k)
        peak_profiles = max(peak_profiles, len(ctx.profiles))
        peak_caps, peak_spend = max(peak_caps, caps), max(peak_spend, spend)
        if day % 25 == 24:
            stored = [*ctx.profiles.values(), *ledger_state.values()]
            peak_bytes = max(peak_bytes, sum(len(orjson.dumps(v)) for v in stored))

    assert len(seen) > 23_000
    # the TTL's 90 days of cohorts, plus their 3 active days and up to 4 days for a sweep pass
    # (3 slices of 4,000 over ~9,500 keys, a new snapshot at each pass)
    assert 90 * COHORT * 0.95 < peak_profiles <= (90 + ACTIVE_DAYS + 4) * COHORT + len(HEAVY)
    # the weekly cap window, the active days, and up to 2 days until the sweep looks again
    assert peak_caps <= (7 + ACTIVE_DAYS + 2) * COHORT + len(HEAVY)
    assert peak_spend <= len(BOOK.campaigns) * PARTITIONS
    # ~700 bytes a profile (a heavy one ~4.5 KB: 50 categories of 64 characters, 20 items, the
    # cart): ~7 MB. The same run without the sweep ends with 24,500 profiles, 23,000 cap entries
    # and ~20 MB.
    assert peak_bytes < 10_000_000
    heavy = ctx.profiles[HEAVY[0]]
    assert len(heavy["categories"]) == MAX_CATEGORIES and len(orjson.dumps(heavy)) < 6_000
    # ~1.3 bids a day for a heavy user, a third of them weekly: a few inside the week, not ~110
    heavy_caps = ledger_state[f"p{user_partition(HEAVY[0])}/freq/{HEAVY[0]}"]
    assert len(heavy_caps["weekly"]) <= 15 and len(heavy_caps.get("hourly", [])) <= 3
