"""The simulated exchange: clearing rules, macro substitution into our signed notice URLs, and the
seeded market. Expected prices are worked out by hand from the rules in `bench.market.model`."""

from __future__ import annotations

import math
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest

from bench.market.model import (
    HOURLY_SHARE,
    Conditions,
    LossReason,
    Market,
    MarketConfig,
    clear,
    substitute,
)
from streams.schemas.adevents import NoticeKind
from streams.signing import NoticeSigner, Ticket, macro_price, macro_value

INC = 0.01


@pytest.mark.parametrize(
    ("bid", "competing", "floor", "at", "won", "price", "loss", "mtw"),
    [
        # second price: best other 1.20 + 0.01 is above the floor 0.30
        (2.0, (1.2, 0.7), 0.3, 2, True, 1.21, LossReason.WON, 1.21),
        # first price: pays its own bid; min-to-win is the same 1.21
        (2.0, (1.2, 0.7), 0.3, 1, True, 2.0, LossReason.WON, 1.21),
        # no competitor above the floor: second price pays the floor, not floor + increment
        (1.0, (0.2,), 0.5, 2, True, 0.5, LossReason.WON, 0.5),
        (0.2, (), 0.1, 2, True, 0.1, LossReason.WON, 0.1),
        # under the floor: lost with code 100, min-to-win is the floor
        (0.4, (), 0.5, 2, False, None, LossReason.BELOW_FLOOR, 0.5),
        (0.4, (0.1,), 0.5, 1, False, None, LossReason.BELOW_FLOOR, 0.5),
        # equal to the best other bid: an increment short, lost with code 102
        (1.0, (1.0, 0.3), 0.1, 2, False, None, LossReason.OUTBID, 1.01),
        # exactly one increment above: won, second price pays all of it
        (1.01, (1.0,), 0.1, 2, True, 1.01, LossReason.WON, 1.01),
        # 0.29 + 0.01 is 0.30 in 1e-4 units even though it is 0.29999999999999998 in floats
        (0.3, (0.29,), 0.05, 2, True, 0.3, LossReason.WON, 0.3),
    ],
)
def test_clearing_rules(
    bid: float,
    competing: tuple[float, ...],
    floor: float,
    at: int,
    won: bool,
    price: float | None,
    loss: LossReason,
    mtw: float,
) -> None:
    c = clear(bid, competing, floor, at, INC)
    assert (c.won, c.price, c.loss, c.min_to_win) == (won, price, loss, mtw)


def test_substitute_known_unknown_and_encoding() -> None:
    url = "https://x/n?a=${AUCTION_PRICE}&b=${AUCTION_FOO}&c=${AUCTION_LOSS}&d=${AUCTION_ID}"
    out = substitute(url, {"AUCTION_PRICE": "1.5000", "AUCTION_ID": "a b&c"})
    assert out == "https://x/n?a=1.5000&b=${AUCTION_FOO}&c=&d=a%20b%26c"


def _signed_bid(signer: NoticeSigner) -> dict[str, object]:
    ticket = Ticket("r1:1", "1", "house-grocery", "u7", 3, 2.0, 1_700_000_000_000, 2)
    base = "http://127.0.0.1:8090/openrtb2/notice"
    return {
        "id": "r1:1",
        "impid": "1",
        "price": 2.0,
        "nurl": signer.url(base, NoticeKind.WIN, ticket),
        "burl": signer.url(base, NoticeKind.BILLING, ticket),
        "lurl": signer.url(base, NoticeKind.LOSS, ticket),
    }


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_win_and_billing_notices_carry_the_clearing_price_and_keep_the_signature() -> None:
    signer = NoticeSigner({"k1": b"0123456789abcdef"}, "k1")
    market = Market(MarketConfig(increment=INC, auction_type=2), seed=1)
    response = {"id": "r1", "bidid": "bid:x", "cur": "USD", "seatbid": [{"bid": [_signed_bid(signer)]}]}
    [settled] = market.settle("r1", response, Conditions(floor=0.3, competing=(1.2, 0.7), rendered=True))
    assert [n.kind for n in settled.notices] == ["win", "billing"]
    for notice, kind in zip(settled.notices, (NoticeKind.WIN, NoticeKind.BILLING), strict=True):
        q = _query(notice.url)
        assert signer.verify(kind, q).bid_price == 2.0  # our signed part is untouched
        assert macro_price(q, "price") == 1.21
        assert macro_price(q, "mtw") == 1.21
        assert (q["loss"], q["aid"], q["abid"], q["aimp"], q["cur"]) == ("0", "r1", "bid:x", "1", "USD")

    # not rendered: the win notice only
    [unrendered] = market.settle("r1", response, Conditions(0.3, (1.2, 0.7), rendered=False))
    assert [n.kind for n in unrendered.notices] == ["win"]
    assert not unrendered.rendered


def test_loss_notice_has_the_code_and_min_to_win_and_no_price() -> None:
    signer = NoticeSigner({"k1": b"0123456789abcdef"}, "k1")
    market = Market(MarketConfig(increment=INC, auction_type=1), seed=1)
    response = {"id": "r1", "cur": "USD", "seatbid": [{"bid": [_signed_bid(signer)]}]}
    [settled] = market.settle("r1", response, Conditions(floor=0.3, competing=(2.5,), rendered=True))
    [notice] = settled.notices
    q = _query(notice.url)
    assert notice.kind == "loss"
    signer.verify(NoticeKind.LOSS, q)
    assert (q["loss"], macro_price(q, "mtw"), macro_value(q, "price")) == ("102", 2.51, None)


def test_conditions_are_seeded_per_auction() -> None:
    cfg = MarketConfig()
    a, b = Market(cfg, seed=7), Market(cfg, seed=7)
    later = [a.conditions(i) for i in range(5)]
    assert b.conditions(3) == later[3]  # the same auction, whatever was drawn before it
    assert Market(cfg, seed=8).conditions(3) != later[3]
    assert len(later[0].competing) == cfg.competitors


def test_conditions_follow_the_stated_distributions() -> None:
    cfg = MarketConfig(competitors=4, mu=0.0, sigma=0.6, floor_low=0.05, floor_high=0.5, render_rate=0.9)
    conds = [Market(cfg, seed=3).conditions(i) for i in range(4000)]
    floors = np.array([c.floor for c in conds])
    bids = np.array([x for c in conds for x in c.competing])
    assert floors.min() >= 0.05 and floors.max() <= 0.5
    assert abs(floors.mean() - 0.275) < 0.01  # uniform mean
    assert abs(np.median(bids) - 1.0) < 0.03  # lognormal median exp(mu)
    assert abs(np.log(bids).std() - 0.6) < 0.02
    assert abs(np.mean([c.rendered for c in conds]) - 0.9) < 0.015


def test_hourly_shape_is_a_distribution() -> None:
    assert len(HOURLY_SHARE) == 24
    assert math.isclose(math.fsum(HOURLY_SHARE), 1.0)
    assert min(HOURLY_SHARE) > 0


def test_config_rejects_an_unknown_auction_type() -> None:
    with pytest.raises(ValueError, match="auction_type"):
        MarketConfig(auction_type=3)


def test_open_loop_summary_counts_unanswered_requests_outside_tmax() -> None:
    from bench.openloop import Shot, summary

    # scheduled at 0, 0.1, 0.2, 0.3 s; answered after 50 ms, 130 ms, never, 100 ms
    shots = [
        Shot(0, 0.0, 0.0, 0.05, 204),
        Shot(1, 0.1, 0.1, 0.23, 200),
        Shot(2, 0.2, 0.2, 1.2, None, error="TimeoutError"),
        Shot(3, 0.3, 0.32, 0.4, 204),
    ]
    s = summary(shots, rate=10.0, tmax_ms=120)
    assert s["within_tmax_share"] == 0.5  # 50 and 100 ms of 4 requests
    assert s["status"] == {"200": 1, "204": 2}
    assert s["errors"] == {"TimeoutError": 1}
    assert s["answered_per_s"] == pytest.approx(3 / 0.4)  # 3 answers from 0.0 to 0.4 s
    assert s["p50_ms"] == pytest.approx(100.0)  # the middle one of 50, 100, 130
