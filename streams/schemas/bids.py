"""OpenRTB 2.6 BidRequest / BidResponse: the objects the bidder reads and the response it writes.

Modelled on the IAB Tech Lab specification (openrtb2.x `2.6.md`, sections 3 and 4, and the
implementation notes). What the specification says, and how it shapes these models:

- Required: `BidRequest.id`, `BidRequest.imp` (at least one), `Imp.id`; inside the objects we
  model, `Video.mimes`, `Audio.mimes`, `Native.request`, `Deal.id`, `SupplyChain.complete/nodes/ver`,
  `SupplyChainNode.asi/sid`. Imp ids are unique within a request (bids reference them), so a
  repeated imp id is rejected.
- "A bid request must not contain more than one of a Site, App or DOOH object", and a Video or
  Audio with `rqddurs` must not also carry `minduration`/`maxduration`: such requests are
  malformed (the HTTP 400 case of section 2.1) and fail decoding. The "should" pairs (`wseat`/`bseat`,
  `acat`/`bcat`, `wlang`/`wlangb`) are tolerated.
- Defaults: `at`=2, `test`=0, `allimps`=0, `cattax`=1, `Imp.bidfloor`=0, `Imp.bidfloorcur`="USD",
  `Imp.instl`=0, `Pmp.private_auction`=0, `Deal.bidfloorcur`="USD" (it does not inherit the imp's),
  `BidResponse.cur`="USD". `Imp.secure` has none: absent means unknown, non-secure may be assumed.
  `cur` has no default either; an absent `cur` reads as `["USD"]`, the currency a response
  defaults to.
- Enumerations live in AdCOM 1.0 and grow without a version change; 2.6 says bidders "must tolerate
  receiving new or unexpected fields and enumerated list values". So enum-valued fields are plain
  integers (with IntEnums for the values the bidder reads), and unknown fields are ignored. `at` is
  1, 2, or 500+ (exchange-specific auction types).
- Types are strict: `"120"` for `tmax`, `true` for a 0/1 flag or `1.5` for an integer fail.
- `nbr` uses the No-Bid Reason list of OpenRTB 3.0, which 2.6 refers to. Its 500+ range is
  "exchange specific values; should be communicated with buyers beforehand": ours are listed in
  `NoBidReason` and must be shared with the exchange.

OpenRTB has no `schema_version`; requests may omit ours (it defaults to 1). Our additions to a
response (reason codes, the source record, the propensity) travel in `ext`, where the
specification puts bidder extensions.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from streams.schemas.common import Id, InputModel, SourceRef
from streams.schemas.outputs import ModelRef

Int = StrictInt
Count = Annotated[StrictInt, Field(ge=0)]
Pixels = Annotated[StrictInt, Field(ge=0)]
Float = StrictFloat  # a JSON integer is a valid float
Flag = Annotated[StrictInt, Field(ge=0, le=1)]
Ext = dict[str, Any] | None
DEFAULT_CURRENCY = "USD"


class AuctionType(IntEnum):
    """`BidRequest.at`; values of 500 and more are exchange-specific and accepted as such."""

    FIRST_PRICE = 1
    SECOND_PRICE_PLUS = 2


class DeviceType(IntEnum):
    """AdCOM 1.0 List: Device Types (values derived from the TAG Inventory Quality Guidelines)."""

    MOBILE_TABLET = 1
    PERSONAL_COMPUTER = 2
    CONNECTED_TV = 3
    PHONE = 4
    TABLET = 5
    CONNECTED_DEVICE = 6
    SET_TOP_BOX = 7
    OOH_DEVICE = 8


class MarkupType(IntEnum):
    """`Bid.mtype`: which of the imp's offered types the creative is."""

    BANNER = 1
    VIDEO = 2
    AUDIO = 3
    NATIVE = 4


class NoBidReason(IntEnum):
    """OpenRTB 3.0 List: No-Bid Reason Codes, all of them, then ours in the 500+ range."""

    UNKNOWN_ERROR = 0
    TECHNICAL_ERROR = 1
    INVALID_REQUEST = 2
    KNOWN_WEB_CRAWLER = 3
    SUSPECTED_NON_HUMAN_TRAFFIC = 4
    CLOUD_DATA_CENTER_OR_PROXY_IP = 5
    UNSUPPORTED_DEVICE = 6
    BLOCKED_PUBLISHER_OR_SITE = 7
    UNMATCHED_USER = 8
    DAILY_USER_CAP_MET = 9
    DAILY_DOMAIN_CAP_MET = 10
    ADS_TXT_AUTHORIZATION_UNAVAILABLE = 11
    ADS_TXT_AUTHORIZATION_VIOLATION = 12
    ADS_CERT_AUTHENTICATION_UNAVAILABLE = 13
    ADS_CERT_AUTHENTICATION_VIOLATION = 14
    INSUFFICIENT_AUCTION_TIME = 15
    INCOMPLETE_SUPPLY_CHAIN = 16
    BLOCKED_SUPPLY_CHAIN_NODE = 17
    # ours
    BELOW_FLOOR = 501  # the best price we would pay is under the imp's floor
    BLOCKED_BY_REQUEST = 502  # badv / bcat / acat / bapp / wseat / bseat exclude every campaign
    NO_MATCHING_CREATIVE = 503  # no creative fits the imp (type, size, mime, duration, battr, secure)
    BUDGET_EXHAUSTED = 504  # today's budget (this partition's share) is spent
    PACING_LIMITED = 505  # the bid would run the campaign ahead of its even-pacing schedule
    FREQUENCY_CAPPED = 506  # the user saw the campaign as often as its cap allows in the window
    CURRENCY_NOT_SUPPORTED = 507  # we bid in one currency; the request or the floor uses another
    PRIVACY_RESTRICTED = 508  # COPPA, GDPR without a consent string, or limit-ad-tracking
    NO_PROPENSITY = 509  # none of the campaign's products is in the user's top recommendations
    PRIVATE_AUCTION_NO_DEAL = 510  # pmp.private_auction=1 and we hold none of the deals
    NO_ACTIVE_CAMPAIGN = 511


# --- request --------------------------------------------------------------------------------------


class _Lenient(BaseModel):
    """Request objects: unknown fields are ignored (2.6 "Versioning Behavior")."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _no_durations_with_rqddurs(obj: Video | Audio) -> None:
    if obj.rqddurs is not None and (obj.minduration is not None or obj.maxduration is not None):
        raise ValueError("rqddurs is mutually exclusive with minduration and maxduration")


class Format(_Lenient):
    w: Pixels | None = None
    h: Pixels | None = None
    wratio: Annotated[StrictInt, Field(gt=0)] | None = None
    hratio: Annotated[StrictInt, Field(gt=0)] | None = None
    wmin: Pixels | None = None
    ext: Ext = None


class Banner(_Lenient):
    format: list[Format] | None = None
    w: Pixels | None = None
    h: Pixels | None = None
    btype: list[Int] | None = None
    battr: list[Int] | None = None
    pos: Int | None = None
    mimes: list[str] | None = None
    topframe: Flag | None = None
    expdir: list[Int] | None = None
    api: list[Int] | None = None
    id: str | None = None
    vcm: Flag | None = None
    ext: Ext = None


class DurFloors(_Lenient):
    mindur: Count | None = None
    maxdur: Count | None = None
    bidfloor: Annotated[StrictFloat, Field(ge=0)] = 0.0
    ext: Ext = None


class Video(_Lenient):
    mimes: list[str]
    minduration: Count | None = None  # "default 0 recommended": None keeps absent apart from 0
    maxduration: Count | None = None
    startdelay: Int | None = None
    maxseq: Count | None = None
    poddur: Count | None = None
    protocols: list[Int] | None = None
    w: Pixels | None = None
    h: Pixels | None = None
    podid: str | None = None
    podseq: Int = 0
    rqddurs: list[Count] | None = None
    plcmt: Int | None = None
    linearity: Int | None = None
    skip: Flag | None = None
    skipmin: Count = 0
    skipafter: Count = 0
    slotinpod: Int = 0
    mincpmpersec: Annotated[StrictFloat, Field(ge=0)] | None = None
    battr: list[Int] | None = None
    maxextended: Int | None = None
    minbitrate: Count | None = None
    maxbitrate: Count | None = None
    boxingallowed: Flag = 1
    playbackmethod: list[Int] | None = None
    playbackend: Int | None = None
    delivery: list[Int] | None = None
    pos: Int | None = None
    companionad: list[Banner] | None = None
    api: list[Int] | None = None
    companiontype: list[Int] | None = None
    durfloors: list[DurFloors] | None = None
    ext: Ext = None

    @model_validator(mode="after")
    def _durations(self) -> Video:
        _no_durations_with_rqddurs(self)
        return self


class Audio(_Lenient):
    mimes: list[str]
    minduration: Count | None = None
    maxduration: Count | None = None
    poddur: Count | None = None
    protocols: list[Int] | None = None
    startdelay: Int | None = None
    rqddurs: list[Count] | None = None
    podid: str | None = None
    podseq: Int = 0
    slotinpod: Int = 0
    mincpmpersec: Annotated[StrictFloat, Field(ge=0)] | None = None
    battr: list[Int] | None = None
    maxextended: Int | None = None
    minbitrate: Count | None = None
    maxbitrate: Count | None = None
    delivery: list[Int] | None = None
    companionad: list[Banner] | None = None
    api: list[Int] | None = None
    companiontype: list[Int] | None = None
    maxseq: Count | None = None
    feed: Int | None = None
    stitched: Flag | None = None
    nvol: Int | None = None
    durfloors: list[DurFloors] | None = None
    ext: Ext = None

    @model_validator(mode="after")
    def _durations(self) -> Audio:
        _no_durations_with_rqddurs(self)
        return self


class Native(_Lenient):
    request: str = Field(description="The Dynamic Native Ads API request, as a JSON-encoded string.")
    ver: str | None = None
    api: list[Int] | None = None
    battr: list[Int] | None = None
    ext: Ext = None


class Deal(_Lenient):
    id: Id
    bidfloor: Annotated[StrictFloat, Field(ge=0)] = 0.0
    bidfloorcur: str = DEFAULT_CURRENCY
    at: Int | None = None
    wseat: list[str] | None = None
    wadomain: list[str] | None = None
    guar: Flag = 0
    mincpmpersec: Annotated[StrictFloat, Field(ge=0)] | None = None
    durfloors: list[DurFloors] | None = None
    ext: Ext = None


class Pmp(_Lenient):
    private_auction: Flag = 0
    deals: list[Deal] | None = None
    ext: Ext = None


class Metric(_Lenient):
    type: str
    value: Float
    vendor: str | None = None
    ext: Ext = None


class Qty(_Lenient):
    multiplier: Float
    sourcetype: Int | None = None
    vendor: str | None = None
    ext: Ext = None


class Imp(_Lenient):
    id: Id
    metric: list[Metric] | None = None
    banner: Banner | None = None
    video: Video | None = None
    audio: Audio | None = None
    native: Native | None = None
    pmp: Pmp | None = None
    displaymanager: str | None = None
    displaymanagerver: str | None = None
    instl: Flag = 0
    tagid: str | None = None
    bidfloor: Annotated[StrictFloat, Field(ge=0)] = 0.0
    bidfloorcur: str = DEFAULT_CURRENCY
    clickbrowser: Flag | None = None
    secure: Flag | None = None
    iframebuster: list[str] | None = None
    rwdd: Flag = 0
    ssai: Int = 0
    exp: Count | None = None
    qty: Qty | None = None
    dt: Float | None = None
    ext: Ext = None

    @property
    def offered(self) -> list[MarkupType]:
        """The impression types offered; the spec requires at least one for a biddable imp."""
        present = {
            MarkupType.BANNER: self.banner,
            MarkupType.VIDEO: self.video,
            MarkupType.AUDIO: self.audio,
            MarkupType.NATIVE: self.native,
        }
        return [kind for kind, obj in present.items() if obj is not None]


class Publisher(_Lenient):
    id: str | None = None
    name: str | None = None
    cattax: Int = 1
    cat: list[str] | None = None
    domain: str | None = None
    ext: Ext = None


class Site(_Lenient):
    id: str | None = None
    name: str | None = None
    domain: str | None = None
    cattax: Int = 1
    cat: list[str] | None = None
    sectioncat: list[str] | None = None
    pagecat: list[str] | None = None
    page: str | None = None
    ref: str | None = None
    search: str | None = None
    mobile: Flag | None = None
    privacypolicy: Flag | None = None
    publisher: Publisher | None = None
    keywords: str | None = None
    kwarray: list[str] | None = None
    inventorypartnerdomain: str | None = None
    ext: Ext = None


class App(_Lenient):
    id: str | None = None
    name: str | None = None
    bundle: str | None = None
    domain: str | None = None
    storeurl: str | None = None
    cattax: Int = 1
    cat: list[str] | None = None
    sectioncat: list[str] | None = None
    pagecat: list[str] | None = None
    ver: str | None = None
    privacypolicy: Flag | None = None
    paid: Flag | None = None
    publisher: Publisher | None = None
    keywords: str | None = None
    kwarray: list[str] | None = None
    inventorypartnerdomain: str | None = None
    ext: Ext = None


class Dooh(_Lenient):
    id: str | None = None
    name: str | None = None
    venuetype: list[str] | None = None
    venuetypetax: Int = 1
    publisher: Publisher | None = None
    domain: str | None = None
    keywords: str | None = None
    ext: Ext = None


class Geo(_Lenient):
    lat: Annotated[StrictFloat, Field(ge=-90, le=90)] | None = None
    lon: Annotated[StrictFloat, Field(ge=-180, le=180)] | None = None
    type: Int | None = None
    accuracy: Count | None = None
    lastfix: Count | None = None
    ipservice: Int | None = None
    country: str | None = None
    region: str | None = None
    regionfips104: str | None = None
    metro: str | None = None
    city: str | None = None
    zip: str | None = None
    utcoffset: Int | None = None
    ext: Ext = None


class Device(_Lenient):
    geo: Geo | None = None
    dnt: Flag | None = None
    lmt: Flag | None = None
    ua: str | None = None
    sua: dict[str, Any] | None = None  # structured user agent: carried, not read
    ip: str | None = None
    ipv6: str | None = None
    devicetype: Int | None = Field(default=None, description="AdCOM List: Device Types (DeviceType).")
    make: str | None = None
    model: str | None = None
    os: str | None = None
    osv: str | None = None
    hwv: str | None = None
    h: Pixels | None = None
    w: Pixels | None = None
    ppi: Pixels | None = None
    pxratio: Float | None = None
    js: Flag | None = None
    geofetch: Flag | None = None
    language: str | None = None
    langb: str | None = None
    carrier: str | None = None
    mccmnc: str | None = None
    connectiontype: Int | None = None
    ifa: str | None = None
    ext: Ext = None


class Segment(_Lenient):
    id: str | None = None
    name: str | None = None
    value: str | None = None
    ext: Ext = None


class Data(_Lenient):
    id: str | None = None
    name: str | None = None
    segment: list[Segment] | None = None
    ext: Ext = None


class Uid(_Lenient):
    id: str | None = None
    atype: Int | None = None
    ext: Ext = None


class Eid(_Lenient):
    inserter: str | None = None
    source: str | None = None
    matcher: str | None = None
    mm: Int | None = None
    uids: list[Uid] | None = None
    ext: Ext = None


class User(_Lenient):
    id: str | None = None
    buyeruid: str | None = None
    yob: Int | None = None  # deprecated in 2.6, still accepted
    gender: str | None = None  # deprecated in 2.6, still accepted
    keywords: str | None = None
    kwarray: list[str] | None = None
    customdata: str | None = None
    geo: Geo | None = None
    data: list[Data] | None = None
    consent: str | None = None
    eids: list[Eid] | None = None
    ext: Ext = None


class Regs(_Lenient):
    coppa: Flag | None = None
    gdpr: Flag | None = None  # a 2.6 field; before 2.6 exchanges sent it as regs.ext.gdpr
    us_privacy: str | None = None
    gpp: str | None = None
    gpp_sid: list[Int] | None = None
    ext: Ext = None


class SupplyChainNode(_Lenient):
    asi: str
    sid: str
    rid: str | None = None
    name: str | None = None
    domain: str | None = None
    hp: Flag | None = None
    ext: Ext = None


class SupplyChain(_Lenient):
    complete: Flag
    nodes: list[SupplyChainNode]
    ver: str
    ext: Ext = None


class Source(_Lenient):
    fd: Flag | None = None
    tid: str | None = None
    pchain: str | None = None
    schain: SupplyChain | None = None
    ext: Ext = None


class BidRequest(InputModel):
    """Key: `user.id` when present, else the request `id`."""

    schema_version: Literal[1] = 1
    id: Id
    imp: list[Imp] = Field(min_length=1, max_length=64)
    site: Site | None = None
    app: App | None = None
    dooh: Dooh | None = None
    device: Device | None = None
    user: User | None = None
    test: Flag = 0
    at: Int = Field(default=AuctionType.SECOND_PRICE_PLUS.value, description="1, 2, or 500+.")
    tmax: Annotated[StrictInt, Field(gt=0)] | None = Field(
        default=None, description="Max ms to answer, including network."
    )
    wseat: list[str] | None = None
    bseat: list[str] | None = None
    allimps: Flag = 0
    cur: list[str] = Field(default_factory=lambda: [DEFAULT_CURRENCY])
    wlang: list[str] | None = None
    wlangb: list[str] | None = None
    acat: list[str] | None = None
    bcat: list[str] = Field(default_factory=list)
    cattax: Int = 1
    badv: list[str] = Field(default_factory=list)
    bapp: list[str] = Field(default_factory=list)
    source: Source | None = None
    regs: Regs | None = None
    ext: Ext = None

    @model_validator(mode="after")
    def _spec_rules(self) -> BidRequest:
        if self.at not in (AuctionType.FIRST_PRICE, AuctionType.SECOND_PRICE_PLUS) and self.at < 500:
            raise ValueError("at must be 1, 2 or an exchange-specific type of 500 or more")
        media = [name for name in ("site", "app", "dooh") if getattr(self, name) is not None]
        if len(media) > 1:
            raise ValueError(f"a bid request must not contain more than one of site, app, dooh: {media}")
        ids = [imp.id for imp in self.imp]
        if len(set(ids)) != len(ids):
            raise ValueError("imp ids must be unique within the request")
        return self

    @property
    def key(self) -> str:
        return self.user.id if self.user and self.user.id else self.id

    @property
    def currencies(self) -> list[str]:
        """Allowed bid currencies; an empty list says no more than an absent one."""
        return self.cur or [DEFAULT_CURRENCY]

    @property
    def gdpr(self) -> int | None:
        """1 when GDPR applies: the 2.6 `regs.gdpr`, else the older `regs.ext.gdpr`."""
        if self.regs is None:
            return None
        if self.regs.gdpr is not None:
            return self.regs.gdpr
        legacy = (self.regs.ext or {}).get("gdpr")
        return legacy if isinstance(legacy, int) and not isinstance(legacy, bool) else None

    @property
    def consent(self) -> str | None:
        """The TCF consent string: the 2.6 `user.consent`, else the older `user.ext.consent`."""
        if self.user is None:
            return None
        legacy = (self.user.ext or {}).get("consent")
        return self.user.consent or (legacy if isinstance(legacy, str) else None)


# --- response -------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bid(_Strict):
    id: str
    impid: str
    price: float = Field(ge=0, description="CPM in the response currency.")
    nurl: str | None = None
    burl: str | None = None
    lurl: str | None = None
    adm: str | None = None
    adid: str | None = None
    adomain: list[str]  # optional in the spec; we always send it, for the exchange's badv check
    bundle: str | None = None
    iurl: str | None = None
    cid: str | None = None
    crid: str  # optional in the spec; we always send it, for ad quality checks
    tactic: str | None = None
    cattax: int | None = None
    cat: list[str] | None = None
    attr: list[int] | None = None
    apis: list[int] | None = None
    protocol: int | None = None
    qagmediarating: int | None = None
    language: str | None = None
    langb: str | None = None
    dealid: str | None = None
    w: int | None = None
    h: int | None = None
    wratio: int | None = None
    hratio: int | None = None
    exp: int | None = None
    dur: int | None = None
    mtype: MarkupType | None = None
    slotinpod: int | None = None
    ext: dict[str, Any] | None = None


class SeatBid(_Strict):
    bid: list[Bid] = Field(min_length=1)
    seat: str | None = None
    group: Literal[0, 1] = 0
    ext: dict[str, Any] | None = None


class ResponseExt(_Strict):
    schema_version: Literal[1] = 1
    response_id: str
    reasons: list[str]
    source: SourceRef
    propensity: float | None = None
    model: ModelRef | None = Field(
        default=None, description="The recommender version behind `propensity` (absent when none was asked)."
    )


class BidResponse(_Strict):
    """A bid (1+ seatbid) or a no-bid (no seatbid, an `nbr`): every response says which and why."""

    id: str = Field(description="The BidRequest id this answers.")
    seatbid: list[SeatBid] = Field(default_factory=list)
    bidid: str | None = None
    cur: str = DEFAULT_CURRENCY
    customdata: str | None = None
    nbr: NoBidReason | None = None
    ext: ResponseExt

    @model_validator(mode="after")
    def _bid_xor_reason(self) -> BidResponse:
        if bool(self.seatbid) == (self.nbr is not None):
            raise ValueError("a response carries bids or a no-bid reason (nbr), exactly one of them")
        return self
