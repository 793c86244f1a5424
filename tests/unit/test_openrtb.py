"""OpenRTB 2.6 schemas against requests written from the specification's examples and field tables
(tests/data/openrtb): valid ones parse, keep the spec's defaults and round-trip; invalid ones are
dead-lettered as schema_invalid with the field named."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streams.errors import BadInput, Reason
from streams.schemas import BidRequest, BidResponse
from streams.schemas.bids import (
    AuctionType,
    Bid,
    DeviceType,
    MarkupType,
    NoBidReason,
    ResponseExt,
    SeatBid,
)
from streams.schemas.common import SourceRef
from streams.serde import decode, encode

DATA = Path(__file__).resolve().parent.parent / "data" / "openrtb"
VALID = sorted(DATA.glob("valid-*.json"))
INVALID = sorted(DATA.glob("invalid-*.json"))
RESPONSES = sorted(DATA.glob("response-spec-*.json"))

# where each invalid request breaks the spec: the dead letter's detail must name it
BROKEN_AT = {
    "invalid-app-and-dooh": "more than one of site, app, dooh",
    "invalid-auction-type-3": "at must be 1, 2",
    "invalid-banner-width-fractional": "imp.0.banner.w",
    "invalid-bidfloor-is-a-string": "imp.0.bidfloor",
    "invalid-cur-is-a-string": "cur",
    "invalid-deal-without-id": "imp.0.pmp.deals.0.id",
    "invalid-duplicate-imp-ids": "imp ids must be unique",
    "invalid-empty-imp": "imp",
    "invalid-id-is-a-number": "id",
    "invalid-imp-not-an-array": "imp",
    "invalid-imp-without-id": "imp.0.id",
    "invalid-latitude-out-of-range": "device.geo.lat",
    "invalid-native-without-request": "imp.0.native.request",
    "invalid-negative-bidfloor": "imp.0.bidfloor",
    "invalid-no-id": "id",
    "invalid-no-imp": "imp",
    "invalid-schain-node-without-asi": "source.schain.nodes.0.asi",
    "invalid-site-and-app": "more than one of site, app, dooh",
    "invalid-test-is-a-boolean": "test",
    "invalid-tmax-is-a-string": "tmax",
    "invalid-video-rqddurs-with-maxduration": "rqddurs is mutually exclusive",
    "invalid-video-without-mimes": "imp.0.video.mimes",
}


def load(name: str) -> BidRequest:
    return decode((DATA / f"{name}.json").read_bytes(), BidRequest, max_bytes=65536)


def test_the_data_set_covers_every_case() -> None:
    assert len(VALID) >= 12 and len(RESPONSES) == 4
    assert {p.stem for p in INVALID} == set(BROKEN_AT)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_requests_parse_and_round_trip(path: Path) -> None:
    request = decode(path.read_bytes(), BidRequest, max_bytes=65536)
    assert decode(encode(request), BidRequest, max_bytes=65536) == request
    assert BidRequest.model_validate(request.model_dump()) == request
    assert request.key == (request.user.id if request.user and request.user.id else request.id)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_requests_are_schema_invalid_and_name_the_field(path: Path) -> None:
    raw = path.read_bytes()
    with pytest.raises(BadInput) as info:
        decode(raw, BidRequest, max_bytes=65536)
    assert info.value.reason is Reason.SCHEMA
    assert BROKEN_AT[path.stem] in info.value.detail


def test_spec_defaults_apply_when_fields_are_absent() -> None:
    request = load("valid-minimal")
    imp = request.imp[0]
    assert request.at == AuctionType.SECOND_PRICE_PLUS and request.test == 0 and request.allimps == 0
    assert request.cattax == 1 and request.cur == ["USD"] and request.tmax is None
    assert imp.bidfloor == 0.0 and imp.bidfloorcur == "USD" and imp.instl == 0
    assert imp.secure is None  # no default in the spec: unknown, non-secure may be assumed
    assert imp.offered == []  # schema-valid, but offers nothing to bid on


def test_spec_example_1_simple_banner() -> None:
    request = load("valid-spec-6.2.1-simple-banner")
    assert request.at == AuctionType.FIRST_PRICE and request.cur == ["USD"]
    imp = request.imp[0]
    assert imp.bidfloor == 0.03 and imp.banner is not None and (imp.banner.w, imp.banner.h) == (300, 250)
    assert request.site is not None and request.site.publisher is not None
    assert request.site.publisher.cat == ["IAB3-1"] and request.site.cattax == 1
    assert request.key == "55816b39711f9b5acf3b90e313ed29e51665623f"


def test_spec_example_3_mobile_app() -> None:
    request = load("valid-spec-6.2.3-mobile-app")
    assert request.app is not None and request.app.bundle == "12345" and request.site is None
    assert request.device is not None and request.device.devicetype == DeviceType.MOBILE_TABLET
    assert request.device.ifa and request.device.dnt == 0
    assert "IAB8-5" in request.bcat and "apple.com" in request.badv
    assert request.imp[0].banner is not None and request.imp[0].banner.btype == [4]


def test_spec_example_4_video_with_companions() -> None:
    request = load("valid-spec-6.2.4-video")
    video = request.imp[0].video
    assert request.tmax == 120 and video is not None
    assert "video/mp4" in video.mimes and (video.minduration, video.maxduration) == (5, 30)
    assert video.companionad is not None and [(c.w, c.h) for c in video.companionad] == [
        (300, 250),
        (728, 90),
    ]
    assert video.boxingallowed == 1 and video.linearity == 1


def test_spec_example_5_deal_floor_currency_does_not_inherit() -> None:
    pmp = load("valid-spec-6.2.5-pmp-direct-deal").imp[0].pmp
    assert pmp is not None and pmp.private_auction == 1 and pmp.deals is not None
    assert [(d.id, d.at, d.bidfloor, d.bidfloorcur) for d in pmp.deals] == [
        ("AB-Agency1-0001", 1, 2.5, "USD"),
        ("XY-Agency2-0001", 2, 2.0, "USD"),
    ]


def test_unusual_but_valid_request_keeps_every_ext() -> None:
    request = load("valid-unusual-everything")
    assert request.test == 1 and request.at == 1 and request.tmax is None
    assert request.cur == ["EUR", "USD"] and request.wseat and request.bseat is None
    assert [imp.offered for imp in request.imp] == [
        [MarkupType.BANNER],
        [MarkupType.VIDEO],
        [MarkupType.NATIVE],
    ]
    assert request.ext == {"prebid": {"debug": True}, "exchange": {"region": "us-west"}}
    assert request.imp[0].ext == {"gpid": "/1234/home/leaderboard"}
    assert request.imp[0].metric and request.imp[0].metric[0].ext == {"window": "30d"}
    assert request.site and request.site.publisher and request.site.publisher.ext == {"tier": "gold"}
    assert request.device and request.device.geo and request.device.geo.ext == {"accuracy_note": "ip"}
    assert request.regs and request.regs.ext == {"dsa": {"dsarequired": 1}}
    assert request.source and request.source.ext == {"omidpn": "ExampleSDK"}
    assert request.gdpr == 1 and request.consent and request.regs.gpp_sid == [2]
    video = request.imp[1].video
    assert video and video.rqddurs == [15, 30] and video.durfloors and video.durfloors[1].mindur == 16


def test_pre_2_6_privacy_fields_in_ext_are_read() -> None:
    request = load("valid-legacy-ext-privacy")
    assert request.regs is not None and request.regs.gdpr is None
    assert request.gdpr == 1 and request.consent == "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"


def test_exchange_specific_and_future_values_are_tolerated() -> None:
    request = load("valid-exchange-specific-values")
    assert request.at == 501  # "exchange-specific auction types can be defined using values 500 and greater"
    assert request.device is not None and request.device.devicetype == 9  # not (yet) in AdCOM: kept
    assert request.cur == [] and request.currencies == ["USD"]
    assert "new_top_level_object" not in request.model_dump()


def test_dooh_request_without_site_or_app() -> None:
    request = load("valid-dooh")
    assert request.dooh is not None and request.site is None and request.app is None
    assert request.imp[0].qty is not None and request.imp[0].qty.multiplier == 14.2


@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.stem)
def test_our_response_model_knows_every_field_of_the_spec_examples(path: Path) -> None:
    body = orjson.loads(path.read_bytes())
    assert set(body) <= set(BidResponse.model_fields)
    for seatbid in body["seatbid"]:
        assert set(seatbid) <= set(SeatBid.model_fields)
        for bid in seatbid["bid"]:
            assert set(bid) <= set(Bid.model_fields)


def test_no_bid_reason_list_is_complete_and_ours_are_500_plus() -> None:
    spec = {r for r in NoBidReason if r < 500}
    assert sorted(spec) == list(range(18))
    assert NoBidReason.INSUFFICIENT_AUCTION_TIME == 15 and NoBidReason.UNMATCHED_USER == 8
    assert all(r >= 500 for r in NoBidReason if r not in spec)


def test_a_response_carries_bids_or_a_reason_never_both_nor_neither() -> None:
    ext = ResponseExt(
        response_id="bid:t/0/0", reasons=["x"], source=SourceRef(topic="t", partition=0, offset=0)
    )
    bid = Bid(id="b", impid="1", price=1.0, adomain=["a.example"], crid="c")
    BidResponse(id="r", nbr=NoBidReason.BELOW_FLOOR, ext=ext)
    BidResponse(id="r", seatbid=[SeatBid(bid=[bid])], ext=ext)
    with pytest.raises(ValueError):
        BidResponse(id="r", ext=ext)
    with pytest.raises(ValueError):
        BidResponse(id="r", seatbid=[SeatBid(bid=[bid])], nbr=NoBidReason.BELOW_FLOOR, ext=ext)
    no_bid = orjson.loads(encode(BidResponse(id="r", nbr=NoBidReason.UNMATCHED_USER, ext=ext)))
    assert no_bid["seatbid"] == [] and no_bid["nbr"] == 8 and no_bid["cur"] == "USD"  # the spec's shape
