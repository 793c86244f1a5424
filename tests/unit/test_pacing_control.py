"""The target curves, the pacing controller over a seeded simulated day, and the first-price bid
shader on seeded synthetic markets. Expected values are worked out by hand in the tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from streams import shading
from streams.campaigns import CampaignBook, Pacing
from streams.pacing import Ledger, Reservation, cost_micros
from streams.pacing_control import SLOT_S, draw, pace, passes
from streams.schemas.adevents import NoticeKind
from streams.schemas.bids import NoBidReason
from tests.unit.test_bidder import AVOCADO, Bidder, campaign, reasons, request
from tests.unit.test_notices import Market

MIDNIGHT = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
# 1 at night (00-06, 18-24), 3 by day: sum = 6 + 36 + 6 = 48
DAYTIME = [1.0] * 6 + [3.0] * 12 + [1.0] * 6


def test_target_curves_by_hand() -> None:
    even, shaped = Pacing(mode="even"), Pacing(mode="shape", shape=DAYTIME)
    assert even.fraction(MIDNIGHT + timedelta(hours=6)) == pytest.approx(6 / 24)
    assert shaped.fraction(MIDNIGHT + timedelta(hours=6)) == pytest.approx(6 / 48)
    assert shaped.fraction(MIDNIGHT + timedelta(hours=12)) == pytest.approx((6 + 18) / 48)
    assert shaped.fraction(MIDNIGHT + timedelta(hours=6, minutes=30)) == pytest.approx((6 + 1.5) / 48)
    assert Pacing(mode="asap").fraction(MIDNIGHT) == 1.0


@pytest.mark.parametrize(
    "config",
    [
        {"mode": "shape"},
        {"mode": "shape", "shape": [1.0] * 23},
        {"mode": "shape", "shape": [0.0] * 24},
        {"mode": "shape", "shape": [-1.0] + [1.0] * 23},
        {"mode": "even", "shape": [1.0] * 24},
        {"mode": "weekly"},
    ],
)
def test_bad_pacing_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Pacing.model_validate(config)


def test_the_throttle_draw_is_stable_and_uniform() -> None:
    assert draw("req-1", "avo") == draw("req-1", "avo") != draw("req-1", "ban")
    rate = 0.3
    passed = sum(draw(f"req-{i}", "avo") < rate for i in range(10_000))
    # binomial(10000, 0.3): sd = sqrt(10000 x 0.3 x 0.7) = 45.8; allow 4 sd
    assert abs(passed - 3000) < 4 * 45.8


def simulate_day(pacing: Pacing, *, seed: int) -> dict[int, int]:
    """One partition, one campaign, 20 requests a minute all day; 20% of bids win and are billed
    at 80% of the 2 CPM bid, the rest lose at once. What could be spent at full rate:
    28,800 x 0.2 x 1600 = 9.2 million; the budget is 2 million. Returns the spend at each hour."""
    avo = campaign("avo", [AVOCADO], daily_budget=2.0, max_cpm=2.0, pacing=pacing)
    ledger = Ledger({}, partitions=1)
    rng = random.Random(seed)
    by_hour: dict[int, int] = {}
    for minute in range(24 * 60):
        now = MIDNIGHT + timedelta(minutes=minute)
        if minute % 60 == 0:
            by_hour[minute // 60] = ledger.spent_micros(avo, 0, now)
        for i in range(20):
            cost = cost_micros(2.0)
            if ledger.refusal(avo, "u", 0, now, cost) or not passes(
                f"req-{minute}-{i}", avo, pace(ledger, avo, 0, now)
            ):
                continue
            resv = Reservation(
                f"b{minute}-{i}", "1", "avo", "u", cost, 2.0, 2.0, 1.0, 2, int(now.timestamp() * 1000)
            )
            ledger.reserve(avo, 0, now, resv)
            ledger.release(0, resv, now)  # the notice comes within the minute
            if rng.random() < 0.2:
                ledger.charge(avo, "u", 0, now, cost_micros(1.6))
    by_hour[24] = ledger.spent_micros(avo, 0, MIDNIGHT + timedelta(hours=23, minutes=59, seconds=59))
    return by_hour


CURVES = {
    "even": ("even", None, [h / 24 for h in range(25)]),
    "daytime": ("shape", DAYTIME, [sum(DAYTIME[:h]) / 48 for h in range(25)]),
}


@pytest.mark.parametrize("curve_name", CURVES)
def test_the_controller_alone_keeps_a_simulated_day_on_the_curve(curve_name: str) -> None:
    """A burst of 100%: no hard line, only the controller (and the budget ceiling) holds the
    spend. At full rate the budget would be gone by 05:13 (2 / 9.2 of the day)."""
    mode, shape, curve = CURVES[curve_name]
    budget = 2_000_000
    spend = simulate_day(Pacing(mode=mode, shape=shape, burst=1.0), seed=7)
    # within 3% of the budget of the curve at every hour: the first slots run at rate 1 until
    # the controller has seen one slot's spend, after that it tracks within a slot or two
    for hour in range(1, 24):
        assert abs(spend[hour] - budget * curve[hour]) <= 0.03 * budget, (hour, spend[hour], curve[hour])
    assert spend[6] <= budget * (curve[6] + 0.03)  # not exhausted by morning
    assert spend[24] >= 0.97 * budget  # and spent by the end of the day


@pytest.mark.parametrize("curve_name", CURVES)
def test_the_hard_line_holds_with_the_controller(curve_name: str) -> None:
    mode, shape, curve = CURVES[curve_name]
    budget = 2_000_000
    spend = simulate_day(Pacing(mode=mode, shape=shape, burst=0.02), seed=5)
    for hour in range(1, 25):
        # never ahead of the curve by more than the burst (2% of the budget) plus one bid
        assert spend[hour] <= budget * (curve[hour] + 0.02) + 1600, (hour, spend[hour])
        assert spend[hour] >= budget * (curve[hour] - 0.03), (hour, spend[hour])
    assert spend[24] <= budget


async def test_a_throttled_campaign_is_a_505_that_names_its_rate() -> None:
    avo = campaign("avo", [AVOCADO], pacing=Pacing(mode="even", burst=0.5))
    bidder = Bidder(CampaignBook(campaigns=[avo]))
    bidder.know("u1")
    slot = int(bidder.clock.now.timestamp()) // SLOT_S
    bidder.state["p0/pace/avo"] = {"slot": slot, "rate": 0.0}
    response = await bidder.one(request("u1"))
    assert response.nbr == NoBidReason.PACING_LIMITED and response.ext.reasons[0] == "throttled"
    assert "skip:throttled:avo:rate=0.0000:" in reasons(response)
    bidder.state["p0/pace/avo"] = {"slot": slot, "rate": 1.0}
    assert (await bidder.one(request("u1"))).seatbid


def test_first_price_shading_converges_to_what_min_to_win_asks() -> None:
    rng = random.Random(11)
    unshaded, factor = 2.0, shading.START_FACTOR
    wanted, seen = [], []
    for _ in range(400):
        mtw = unshaded * 0.6 * rng.lognormvariate(0, 0.1)
        wanted.append(min(1.0, mtw / unshaded * 1.02))  # the module's rule: m / u x (1 + 2%)
        factor = shading.next_factor(factor, unshaded=unshaded, won=False, min_to_win=mtw)
        seen.append(factor)
    target = sum(wanted) / len(wanted)  # about 0.6 x 1.02 x e^0.005 = 0.615
    assert abs(shading.START_FACTOR - target) > 0.3
    assert abs(sum(seen[-100:]) / 100 - target) < 0.01


def test_without_min_to_win_the_win_rate_controller_finds_the_target_rate() -> None:
    """Competitors bid u x Uniform(0.4, 0.9): a factor f wins with probability (f - 0.4) / 0.5,
    so the target win rate 0.4 is reached at f = 0.4 + 0.5 x 0.4 = 0.6."""
    rng = random.Random(3)
    factor, seen = shading.START_FACTOR, []
    for _ in range(3000):
        won = factor >= rng.uniform(0.4, 0.9)
        factor = shading.next_factor(factor, unshaded=2.0, won=won, min_to_win=None)
        seen.append(factor)
    assert abs(sum(seen[-1000:]) / 1000 - (0.4 + 0.5 * shading.TARGET_WIN_RATE)) < 0.03
    assert all(shading.MIN_FACTOR <= f <= 1.0 for f in seen)


async def test_first_price_bids_are_shaded_and_learn_from_their_notices() -> None:
    market = Market()
    market.state["p0/shade/avo"] = {"factor": 0.7, "updates": 5}
    bid = await market.bid(at=1)
    assert bid.price == round(2.0 * 0.7, 4)
    [response] = [r for r in [await market.one(request("u1", at=1))]]
    assert "imp:1:shading:first_price:factor=0.7000:unshaded=2:bid=1.4" in reasons(response)
    await market.settle(market.event(bid, NoticeKind.LOSS, mtw="1.8"))
    # 0.7 + 0.1 x (min(1, 1.8 / 2 x 1.02) - 0.7) = 0.7 + 0.1 x (0.918 - 0.7) = 0.7218
    assert market.state["p0/shade/avo"]["factor"] == pytest.approx(0.7218)
    second = await market.bid(at=2)
    assert second.price == 2.0  # second price: never shaded


def test_the_floor_bounds_a_shaded_bid() -> None:
    assert shading.shaded_price(2.0, 0.5, floor=1.5) == 1.5
    assert shading.shaded_price(2.0, 0.5, floor=0.5) == 1.0
