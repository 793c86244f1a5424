"""bid-requests -> ad-bids: one OpenRTB 2.6 BidResponse per request, a bid or a no-bid with `nbr`.

Pricing (see `streams.campaigns`), for campaign c and the user's top 20 recommendations:

    propensity(c) = min(1, sum(score_i for item_i in top20 if item_i in products(c))
                             x (1 + sum(boost_s for s in segments(user) if s in segment_boost(c))))
                    (a store-wide campaign, without products, counts all 20 scores)
    price(c)      = round(min(max_cpm, propensity(c) x value_per_conversion x 1000 x shade), 4)  [CPM]

The recommender's input is the user's recent items from their profile; its scores are a softmax
over the catalogue, so `propensity` estimates the chance that the next purchase is one of c's
products. In a first-price auction (`at=1`) the bid is `price(c)` times the campaign's learned
shading factor, never below a floor `price(c)` clears (`streams.shading`); second-price bids are
`price(c)`. Every response lists the inputs of the formula in `ext.reasons`, the factor and the
unshaded price included.

A request, step by step (each refusal is a no-bid with the `nbr` in brackets):
1. Its `tmax`, counted from the record's Kafka timestamp, has already passed [15]. None of our
   currency in `cur` [507]. COPPA, GDPR without a consent string, or `device.lmt=1`: this bidder
   only does behavioural targeting [508]. No `user.id`, or a user without history [8].
2. Per imp and campaign, before asking the model: the imp offers a type (banner, video, audio,
   native) [2 if no imp does]; it is not a private auction [510]; its floor is in our currency
   [507]; the campaign is not excluded by `badv`, `bcat`/`acat`, `bapp`, `wseat`/`bseat` [502];
   one of its creatives fits the imp (type, size or flex ratio, mimes, duration, protocols,
   `battr`, `secure`) [503]; the user is not in an excluded segment [509]; the campaign is under
   the user's frequency cap [506] and has budget [504] and pacing room [505] left, and the
   pacing controller's throttle lets the request through (`streams.pacing_control`) [505, the
   reason names the rate]; paused campaigns never bid [511 if none is active]. A request
   without any candidate is answered without calling the model.
3. One batched recommender call, with the earliest deadline of the batch. If a deadline passes
   meanwhile, those requests get [15], never a late bid; a failed call gives [1] (or [15]).
4. Per imp, the candidates are priced (none of a campaign's products in the top 20: [509]); the
   highest price (then the campaign id) that is at least the floor [501] (`imp.bidfloor`, or the
   Video/Audio floor guidance, note 7.11) and still fits the frequency cap, budget and pacing
   with its own cost wins the imp. An imp without a winner says why, and the response's `nbr` is that of the imp that
   came closest to a bid (`Stage`).
5. Each winner reserves its bid-price cost and a frequency slot in the state (`streams.pacing`),
   which count like spend until its billing or loss notice settles them or they expire
   (`streams.handlers.notices`), and carries signed `nurl`/`burl`/`lurl` (`streams.signing`).
   Test requests (`test=1`, not billable) and replays of records already applied reserve
   nothing; their bids still carry the URLs, and a notice for them is dead-lettered.

A request that is dead-lettered is answered as well when it names its `id` (a JSON object with a
string `id`): failing the schema or its `schema_version` [2], or the handler failing on it [1]
(`answer_invalid_request`, the bid route's `on_invalid`). The other dead letters (not UTF-8, not
JSON, not an object, oversized: never parsed) cannot say what they would answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from streams import shading
from streams.campaigns import Campaign, CampaignBook, Creative, Propensity
from streams.dlq import RecordMeta
from streams.errors import BadInput, InferenceError, Reason
from streams.handlers.common import Context, Outcome, Output, Record
from streams.handlers.segments import load_profile
from streams.inference import Recommendations
from streams.labels import model_ref
from streams.pacing import Ledger, Limit, Reservation, cost_micros
from streams.pacing_control import pace, passes
from streams.profile import Profile
from streams.replyto import answered, deadline_ms, reply_headers
from streams.schemas import BidRequest, BidResponse
from streams.schemas.adevents import NoticeKind
from streams.schemas.bids import Bid, Imp, NoBidReason, ResponseExt, SeatBid
from streams.schemas.common import Id, SourceRef
from streams.serde import loads
from streams.shading import FIRST_PRICE, shaded_price
from streams.signing import NoticeSigner, Ticket

log = logging.getLogger("streams.handlers.bids")
# Request values echoed in reasons must not carry what the request smuggled in (scripts, PII).
_CURRENCY = re.compile(r"[A-Z]{3}")

SAFETY_MS = 5.0  # answer at least this long before tmax: the response still has to reach the exchange
FORMULA = (
    "formula:price=min(max_cpm,propensity*value_per_conversion*1000*shade);"
    "propensity=min(1,sum(top20 scores of campaign products)*(1+sum(segment boosts)))"
)

Notices = tuple[NoticeSigner, str]  # the signer and the base URL of the notice endpoint
_process_state: dict[str, Any] = {}  # used only until the app passes a table-backed state


class Stage(IntEnum):
    """How far a campaign got towards a bid on an imp; the furthest stage explains a no-bid."""

    NO_TYPE = -1
    NO_ACTIVE_CAMPAIGN = 0
    PRIVATE_AUCTION = 1
    FLOOR_CURRENCY = 2
    BLOCKED = 3
    NO_CREATIVE = 4
    AUDIENCE_EXCLUDED = 5
    FREQUENCY = 6
    BUDGET = 7
    PACING = 8
    THROTTLED = 9
    NO_PROPENSITY = 10
    BELOW_FLOOR = 11
    BUDGET_AT_PRICE = 12
    PACING_AT_PRICE = 13

    @property
    def nbr(self) -> NoBidReason:
        return _NBR[self]

    @property
    def label(self) -> str:
        return _LABEL.get(self, self.name.lower())


_NBR = {
    Stage.NO_TYPE: NoBidReason.INVALID_REQUEST,
    Stage.NO_ACTIVE_CAMPAIGN: NoBidReason.NO_ACTIVE_CAMPAIGN,
    Stage.PRIVATE_AUCTION: NoBidReason.PRIVATE_AUCTION_NO_DEAL,
    Stage.FLOOR_CURRENCY: NoBidReason.CURRENCY_NOT_SUPPORTED,
    Stage.BLOCKED: NoBidReason.BLOCKED_BY_REQUEST,
    Stage.NO_CREATIVE: NoBidReason.NO_MATCHING_CREATIVE,
    Stage.AUDIENCE_EXCLUDED: NoBidReason.NO_PROPENSITY,
    Stage.FREQUENCY: NoBidReason.FREQUENCY_CAPPED,
    Stage.BUDGET: NoBidReason.BUDGET_EXHAUSTED,
    Stage.PACING: NoBidReason.PACING_LIMITED,
    Stage.THROTTLED: NoBidReason.PACING_LIMITED,
    Stage.NO_PROPENSITY: NoBidReason.NO_PROPENSITY,
    Stage.BELOW_FLOOR: NoBidReason.BELOW_FLOOR,
    Stage.BUDGET_AT_PRICE: NoBidReason.BUDGET_EXHAUSTED,
    Stage.PACING_AT_PRICE: NoBidReason.PACING_LIMITED,
}
_LABEL = {
    Stage.NO_TYPE: "imp_offers_no_type",
    Stage.BUDGET: "out_of_budget",
    Stage.BUDGET_AT_PRICE: "out_of_budget",
    Stage.PACING: "ahead_of_pace",
    Stage.PACING_AT_PRICE: "ahead_of_pace",
    Stage.FREQUENCY: "frequency_capped",
}
_AT_PRICE = {
    Limit.FREQUENCY: Stage.FREQUENCY,
    Limit.BUDGET: Stage.BUDGET_AT_PRICE,
    Limit.PACING: Stage.PACING_AT_PRICE,
}
_BEFORE_PRICE = {Limit.FREQUENCY: Stage.FREQUENCY, Limit.BUDGET: Stage.BUDGET, Limit.PACING: Stage.PACING}


@dataclass(frozen=True)
class Candidate:
    campaign: Campaign
    creative: Creative
    floor: float
    adm: str | None


@dataclass
class ImpPlan:
    imp: Imp
    candidates: list[Candidate] = field(default_factory=list)
    skips: list[tuple[Stage, str]] = field(default_factory=list)  # (stage, "campaign:detail")

    def skip(self, stage: Stage, what: str) -> None:
        self.skips.append((stage, what))

    @property
    def furthest(self) -> Stage:
        return max((s for s, _ in self.skips), default=Stage.NO_ACTIVE_CAMPAIGN)


@dataclass
class Plan:
    """A request that passed the request-level checks, waiting for its recommendations."""

    index: int
    record: Record[BidRequest]
    user: str
    profile: Profile
    imps: list[ImpPlan]
    deadline: float | None  # on the monotonic clock (`Context.monotonic`)


# --- request level --------------------------------------------------------------------------------


def deadline_of(record: Record[BidRequest], now: datetime, mono: float) -> float | None:
    """When the answer must be out, on the monotonic clock: `tmax` (less SAFETY_MS) after the
    record's Kafka timestamp, or, for a request from the HTTP gateway, its `ms-deadline-ms`
    header (less SAFETY_MS: the answer still travels back through bid-replies). Both are
    wall-clock times, so they are placed against `now` once, with `mono` read at the same
    moment; every later check and the model's deadline then run on the monotonic clock, which
    a wall-clock step cannot move."""
    by_header = deadline_ms(record.meta.headers)
    if by_header is not None:
        return mono + (by_header - SAFETY_MS) / 1000.0 - now.timestamp()
    tmax = record.value.tmax
    if tmax is None or record.meta.timestamp_ms is None:
        return None
    return mono + (record.meta.timestamp_ms + tmax - SAFETY_MS) / 1000.0 - now.timestamp()


def _ext(record: Record[BidRequest], reasons: list[str], propensity: float | None = None) -> ResponseExt:
    return ResponseExt(
        response_id=f"bid:{record.source.record_id}",
        reasons=reasons,
        source=record.source,
        propensity=None if propensity is None else round(propensity, 6),
    )


def _no_bid(
    record: Record[BidRequest], nbr: NoBidReason, reasons: list[str], propensity: float | None = None
) -> BidResponse:
    return BidResponse(id=record.value.id, nbr=nbr, ext=_ext(record, reasons, propensity))


_REQUEST_ID: TypeAdapter[str] = TypeAdapter(Id)  # as BidRequest.id: what a valid request echoes
# Dead letters whose record was parsed as a JSON object, and the no-bid they get.
_INVALID_NBR = {
    Reason.SCHEMA: NoBidReason.INVALID_REQUEST,
    Reason.UNKNOWN_SCHEMA_VERSION: NoBidReason.INVALID_REQUEST,
    Reason.PROCESSING_ERROR: NoBidReason.TECHNICAL_ERROR,
}


def answer_route(meta: RecordMeta, ctx: Context) -> tuple[str, list[tuple[str, bytes]] | None]:
    """Where a request's answer goes: bid-replies with the gateway's headers for a request that
    came through the HTTP gateway (`streams.replyto`), else ad-bids."""
    headers = reply_headers(meta.headers)
    if headers is None:
        return ctx.settings.topics.ad_bids, None
    return ctx.settings.topics.bid_replies, headers


def answer_invalid_request(
    meta: RecordMeta, raw: bytes | None, error: BadInput, ctx: Context
) -> list[Outcome]:
    """The no-bid for a dead-lettered request that names its `id`, so the exchange is answered.
    Keyed and identified like every other answer: `user.id` (else the id), `bid:<source>`. Its
    reasons say why; the schema's detail holds field paths and messages, never values, and the
    other details (a schema_version, an exception) are left out because they can hold values."""
    nbr = _INVALID_NBR.get(error.reason)
    if nbr is None or raw is None or answered(meta.headers):  # the gateway answered it already (400)
        return []
    body = loads(raw)  # these reasons come after the record was parsed as a JSON object
    try:
        request_id = _REQUEST_ID.validate_python(body.get("id"), strict=True)
    except ValidationError:
        return []
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    key = user_id if isinstance(user_id, str) and user_id else request_id
    source = SourceRef(topic=meta.topic, partition=meta.partition, offset=meta.offset)
    reasons = [error.reason.value, *([error.detail] if error.reason is Reason.SCHEMA else [])]
    ext = ResponseExt(response_id=f"bid:{source.record_id}", reasons=reasons, source=source)
    topic, headers = answer_route(meta, ctx)
    return [Output.of(topic, key, BidResponse(id=request_id, nbr=nbr, ext=ext), headers)]


def _request_refusal(request: BidRequest, book: CampaignBook) -> tuple[NoBidReason, str] | None:
    if book.currency not in request.currencies:
        return NoBidReason.CURRENCY_NOT_SUPPORTED, "currency_not_allowed:" + ",".join(
            c if _CURRENCY.fullmatch(c) else "?" for c in request.currencies
        )
    if request.regs is not None and request.regs.coppa == 1:
        return NoBidReason.PRIVACY_RESTRICTED, "coppa_applies:no_behavioural_targeting"
    if request.gdpr == 1 and not request.consent:
        return NoBidReason.PRIVACY_RESTRICTED, "gdpr_applies_without_consent_string"
    if request.device is not None and request.device.lmt == 1:
        return NoBidReason.PRIVACY_RESTRICTED, "limit_ad_tracking"
    if not (request.user and request.user.id):
        return NoBidReason.UNMATCHED_USER, "no_user_id"
    if not any(imp.offered for imp in request.imp):
        return NoBidReason.INVALID_REQUEST, "no_imp_offers_banner_video_audio_or_native"
    return None


# --- imp x campaign, before pricing ---------------------------------------------------------------


def _domain_blocked(domain: str, blocked: Sequence[str]) -> str | None:
    d = domain.lower().rstrip(".")
    for b in blocked:
        b = b.lower().rstrip(".")
        if d == b or d.endswith("." + b):
            return b
    return None


def _category_match(cat: str, listed: Sequence[str]) -> str | None:
    """IAB Content Taxonomy 1.0 is two-tier ("IAB8" > "IAB8-5"): listing a tier-1 category
    covers its tier-2 children."""
    for entry in listed:
        if cat == entry or cat.startswith(entry + "-"):
            return entry
    return None


def _blocked(request: BidRequest, campaign: Campaign) -> str | None:
    """Why the request's own rules exclude the campaign, whatever the imp."""
    if request.wseat is not None and campaign.seat not in request.wseat:
        return f"seat_not_in_wseat:{campaign.seat}"
    if request.bseat and campaign.seat in request.bseat:
        return f"seat_in_bseat:{campaign.seat}"
    for domain in campaign.adomain:
        if hit := _domain_blocked(domain, request.badv):
            return f"badv:{hit}"
    if request.bcat or request.acat:
        if request.cattax != campaign.cattax:
            return f"cattax_mismatch:request={request.cattax},campaign={campaign.cattax}"
        for cat in campaign.cat:
            if hit := _category_match(cat, request.bcat):
                return f"bcat:{hit}"
        if request.acat is not None and not any(_category_match(c, request.acat) for c in campaign.cat):
            return "not_in_acat"
    if campaign.bundle and campaign.bundle in request.bapp:
        return f"bapp:{campaign.bundle}"
    return None


def _duration_fits(creative: Creative, media: Any) -> bool:
    dur = creative.duration_s or 0
    if media.rqddurs is not None:
        return dur in media.rqddurs
    return (media.minduration is None or dur >= media.minduration) and (
        media.maxduration is None or dur <= media.maxduration
    )


def _banner_fits(creative: Creative, imp: Imp) -> bool:
    banner = imp.banner
    assert banner is not None
    w, h = creative.w or 0, creative.h or 0
    sizes = {(f.w, f.h) for f in banner.format or [] if f.w is not None and f.h is not None}
    if banner.w is not None and banner.h is not None:
        sizes.add((banner.w, banner.h))
    flex = [f for f in banner.format or [] if f.wratio and f.hratio]
    if sizes or flex:
        fixed = (w, h) in sizes
        ratio = any(
            w * f.hratio == h * f.wratio and w >= (f.wmin or 0)
            for f in flex
            if f.wratio is not None and f.hratio is not None
        )
        if not (fixed or ratio):
            return False
    if banner.mimes and not set(creative.mimes) & set(banner.mimes):
        return False
    return not set(creative.attr) & set(banner.battr or [])


def _creative_fits(creative: Creative, imp: Imp) -> bool:
    if imp.secure == 1 and not creative.secure:
        return False
    if creative.format == "banner":
        return imp.banner is not None and _banner_fits(creative, imp)
    if creative.format == "native":
        return (
            imp.native is not None
            and creative.native is not None
            and not set(creative.attr) & set(imp.native.battr or [])
            and creative.native.markup(imp.native.request) is not None
        )
    media = imp.video if creative.format == "video" else imp.audio
    if media is None:
        return False
    return (
        bool(set(creative.mimes) & set(media.mimes))
        and _duration_fits(creative, media)
        and (
            not media.protocols
            or not creative.protocols
            or bool(set(creative.protocols) & set(media.protocols))
        )
        and not set(creative.attr) & set(media.battr or [])
    )


def floor_cpm(imp: Imp, creative: Creative) -> float:
    """Implementation note 7.11: on the open market, the Video/Audio floor guidance when there is
    some (a DurFloors range holding the creative's duration, else `mincpmpersec` x duration),
    else the Imp's `bidfloor`. All of them are in `imp.bidfloorcur`."""
    media = imp.video if creative.format == "video" else imp.audio if creative.format == "audio" else None
    if media is not None and creative.duration_s is not None:
        dur = creative.duration_s
        for band in media.durfloors or []:
            if (band.mindur is None or dur >= band.mindur) and (band.maxdur is None or dur <= band.maxdur):
                return band.bidfloor
        if media.mincpmpersec is not None:
            return media.mincpmpersec * dur
    return imp.bidfloor


def _plan_imp(
    imp: Imp,
    request: BidRequest,
    book: CampaignBook,
    profile: Profile,
    ledger: Ledger,
    user: str,
    *,
    partition: int,
    now: datetime,
) -> ImpPlan:
    plan = ImpPlan(imp)
    if not imp.offered:
        plan.skip(Stage.NO_TYPE, "banner_video_audio_native_all_absent")
        return plan
    if imp.pmp is not None and imp.pmp.private_auction == 1:
        plan.skip(Stage.PRIVATE_AUCTION, "no_deal_held")
        return plan
    if imp.bidfloorcur != book.currency:
        plan.skip(Stage.FLOOR_CURRENCY, f"{imp.bidfloorcur}!={book.currency}")
        return plan
    if not book.active:
        plan.skip(Stage.NO_ACTIVE_CAMPAIGN, "all_campaigns_paused")
    for campaign in book.active:
        if why := _blocked(request, campaign):
            plan.skip(Stage.BLOCKED, f"{campaign.id}:{why}")
            continue
        creative = next((c for c in campaign.creatives if _creative_fits(c, imp)), None)
        if creative is None:
            plan.skip(
                Stage.NO_CREATIVE,
                f"{campaign.id}:offered={'+'.join(k.name.lower() for k in imp.offered)}",
            )
            continue
        if excluded := sorted(set(profile.segments) & set(campaign.exclude_segments)):
            plan.skip(Stage.AUDIENCE_EXCLUDED, f"{campaign.id}:{','.join(excluded)}")
            continue
        if refusal := ledger.refusal(campaign, user, partition, now):
            plan.skip(_BEFORE_PRICE[refusal.limit], f"{campaign.id}:{refusal.detail}")
            continue
        current = pace(ledger, campaign, partition, now)
        if not passes(request.id, campaign, current):
            plan.skip(Stage.THROTTLED, f"{campaign.id}:{current.explain()}")
            continue
        adm = creative.adm
        if creative.native is not None and imp.native is not None:
            adm = creative.native.markup(imp.native.request)
        plan.candidates.append(Candidate(campaign, creative, floor_cpm(imp, creative), adm))
    return plan


# --- pricing and the response ---------------------------------------------------------------------


def _bid_for(imp_plan: ImpPlan, cand: Candidate, ticket: Ticket, signer: NoticeSigner, base: str) -> Bid:
    imp, creative, campaign = imp_plan.imp, cand.creative, cand.campaign
    return Bid(
        id=ticket.bid_id,
        impid=imp.id,
        price=ticket.bid_price,
        nurl=signer.url(base, NoticeKind.WIN, ticket),
        burl=signer.url(base, NoticeKind.BILLING, ticket),
        lurl=signer.url(base, NoticeKind.LOSS, ticket),
        adm=cand.adm,
        adid=creative.crid,
        adomain=campaign.adomain,
        bundle=campaign.bundle,
        iurl=creative.iurl,
        cid=campaign.id,
        crid=creative.crid,
        cattax=campaign.cattax if campaign.cattax != 1 else None,
        cat=campaign.cat or None,
        attr=creative.attr or None,
        language=creative.language,
        w=creative.w,
        h=creative.h,
        dur=creative.duration_s,
        mtype=creative.mtype,
    )


def _decide(
    plan: Plan,
    items: Sequence[int],
    scores: Sequence[float],
    book: CampaignBook,
    ledger: Ledger,
    now: datetime,
    notices: Notices,
    notes: Sequence[str] = (),
) -> BidResponse:
    """Price every candidate and pick one per imp; reservations go to `ledger` (a per-request
    view). First-price bids are shaded by the campaign's learned factor (`streams.shading`)."""
    record, request = plan.record, plan.record.value
    partition = record.meta.partition
    # The bid's time: the record's, so a replay that bids the same signs the same notice URLs.
    stamped = record.meta.timestamp_ms
    issued_ms = stamped if stamped is not None else int(now.timestamp() * 1000)
    reasons: list[str] = [FORMULA, f"history_items:{len(plan.profile.recent_items)}", *notes]
    bids: dict[str, list[Bid]] = {}
    best_seen: float | None = None
    chosen: float | None = None
    for imp_plan in plan.imps:
        imp = imp_plan.imp
        priced: list[tuple[float, Candidate, Propensity]] = []
        for cand in imp_plan.candidates:
            p = cand.campaign.propensity(items, scores, plan.profile.segments)
            best_seen = max(best_seen or 0.0, p.value)
            if p.value <= 0:
                imp_plan.skip(Stage.NO_PROPENSITY, f"{cand.campaign.id}:no_product_in_top{len(items)}")
                continue
            priced.append((cand.campaign.price_cpm(p.value), cand, p))
        priced.sort(key=lambda x: (-x[0], x[1].campaign.id))
        won = False
        for unshaded, cand, p in priced:
            c = cand.campaign
            if won:
                reasons.append(f"imp:{imp.id}:outbid:{c.id}:price={unshaded:g}")
                continue
            if unshaded < cand.floor:
                imp_plan.skip(
                    Stage.BELOW_FLOOR,
                    f"{c.id}:price={unshaded:g}<floor={cand.floor:g}:{c.price_formula(p.value)}",
                )
                continue
            first_price = request.at == FIRST_PRICE
            factor = shading.current(ledger, c.id, partition).factor if first_price else 1.0
            price = shaded_price(unshaded, factor, cand.floor) if first_price else unshaded
            cost = cost_micros(price)
            if refusal := ledger.refusal(c, plan.user, partition, now, cost):
                imp_plan.skip(_AT_PRICE[refusal.limit], f"{c.id}:{refusal.detail}")
                continue
            ticket = Ticket(
                bid_id=f"{request.id}:{imp.id}",
                imp_id=imp.id,
                campaign=c.id,
                user=plan.user,
                partition=partition,
                bid_price=price,
                issued_ms=issued_ms,
                auction_type=request.at,
            )
            resv = Reservation(
                bid_id=ticket.bid_id,
                imp=imp.id,
                campaign=c.id,
                user=plan.user,
                micros=cost,
                price=price,
                unshaded=unshaded,
                factor=factor,
                at=request.at,
                issued_ms=issued_ms,
            )
            ledger.reserve(c, partition, now, resv)
            bids.setdefault(c.seat, []).append(_bid_for(imp_plan, cand, ticket, *notices))
            chosen = p.value if chosen is None else chosen
            shade = (
                f"imp:{imp.id}:shading:first_price:factor={factor:.4f}:unshaded={unshaded:g}:bid={price:g}"
                if first_price
                else f"imp:{imp.id}:shading:none:auction_type={request.at}:unshaded={unshaded:g}"
            )
            reasons += [
                f"imp:{imp.id}:bid:campaign={c.id}:crid={cand.creative.crid}",
                f"imp:{imp.id}:propensity:{p.explain()}",
                f"imp:{imp.id}:price:{c.price_formula(p.value)}:floor={cand.floor:g}{imp.bidfloorcur}",
                shade,
            ]
            won = True
        reasons += [f"imp:{imp.id}:skip:{stage.label}:{what}" for stage, what in imp_plan.skips]
    if not bids:
        furthest = max((ip.furthest for ip in plan.imps), default=Stage.NO_ACTIVE_CAMPAIGN)
        return _no_bid(record, furthest.nbr, [furthest.label, *reasons], best_seen)
    seatbid = [SeatBid(bid=b, seat=seat) for seat, b in bids.items()]
    ext = _ext(record, reasons, chosen)
    return BidResponse(id=request.id, seatbid=seatbid, bidid=ext.response_id, cur=book.currency, ext=ext)


async def handle_bids(
    records: Sequence[Record[BidRequest]],
    ctx: Context,
    book: CampaignBook,
    state: MutableMapping[str, Any] | None = None,
) -> list[Outcome]:
    """Answer every request. `state` holds spend, pacing and frequency (see `streams.pacing`);
    without one, a per-process dict stands in (lost on restart, not shared between workers)."""
    if state is None:
        state = _process_state
    ledger = Ledger(state, partitions=ctx.settings.partitions, timeout_s=ctx.settings.notice_timeout_s)
    notices = (ctx.settings.notice_signer(), ctx.settings.notice_base_url)  # once per batch
    now, started = ctx.now(), ctx.monotonic()  # the batch's one reading of the wall clock
    answers: dict[int, BidResponse] = {}
    plans: list[Plan] = []
    for i, record in enumerate(records):
        request = record.value
        deadline = deadline_of(record, now, started)
        if deadline is not None and started >= deadline:
            answers[i] = _no_bid(
                record, NoBidReason.INSUFFICIENT_AUCTION_TIME, ["tmax_expired_before_scoring"]
            )
            continue
        if refusal := _request_refusal(request, book):
            answers[i] = _no_bid(record, refusal[0], [refusal[1]])
            continue
        user = request.key
        profile = load_profile(ctx, user)
        if not profile.recent_items:
            answers[i] = _no_bid(record, NoBidReason.UNMATCHED_USER, ["no_history_for_user"])
            continue
        imps = [
            _plan_imp(imp, request, book, profile, ledger, user, partition=record.meta.partition, now=now)
            for imp in request.imp
        ]
        if not any(ip.candidates for ip in imps):
            furthest = max(ip.furthest for ip in imps)
            skips = [f"imp:{ip.imp.id}:skip:{s.label}:{w}" for ip in imps for s, w in ip.skips]
            answers[i] = _no_bid(record, furthest.nbr, [furthest.label, *skips])
            continue
        plans.append(Plan(i, record, user, profile, imps, deadline))
    if plans:
        await _score(plans, ctx, book, ledger, now, answers, notices)
    for record in records:
        ledger.advance(record.meta.topic, record.meta.partition, record.meta.offset)
    ledger.commit()
    routed = [answer_route(record.meta, ctx) for record in records]
    return [
        Output.of(topic, records[i].value.key, answers[i], headers)
        for i, (topic, headers) in enumerate(routed)
    ]


async def _score(
    plans: list[Plan],
    ctx: Context,
    book: CampaignBook,
    ledger: Ledger,
    now: datetime,
    answers: dict[int, BidResponse],
    notices: Notices,
) -> None:
    deadlines = [p.deadline for p in plans if p.deadline is not None]
    try:
        recs: Recommendations = await ctx.models.recommend(
            [p.profile.recent_items for p in plans], deadline_s=min(deadlines, default=None)
        )
    except InferenceError as exc:
        log.warning("recommender failed for %d bid requests: %s", len(plans), exc)
        expired = bool(deadlines) and ctx.monotonic() >= min(deadlines)
        for p in plans:
            nbr = NoBidReason.INSUFFICIENT_AUCTION_TIME if expired else NoBidReason.TECHNICAL_ERROR
            answers[p.index] = _no_bid(p.record, nbr, [f"model_unavailable:{exc.status}"])
        return
    after = ctx.monotonic()
    for row, p in enumerate(plans):
        if p.deadline is not None and after >= p.deadline:
            answers[p.index] = _no_bid(
                p.record, NoBidReason.INSUFFICIENT_AUCTION_TIME, ["tmax_expired_while_scoring"]
            )
            continue
        meta = p.record.meta
        notes = []
        if p.record.value.test == 1:
            notes.append("test_mode:not_reserved")  # test auctions are not billable
        if meta.offset <= ledger.watermark(meta.topic, meta.partition):
            notes.append("replay:already_reserved")
        view = ledger.child()
        items = [int(x) for x in recs.items[row]]
        scores = [float(x) for x in recs.scores[row]]
        answer = _decide(p, items, scores, book, view, now, notices, notes)
        ext = answer.ext.model_copy(update={"model": model_ref(recs.model)})  # the version that scored it
        answers[p.index] = answer.model_copy(update={"ext": ext})
        if not notes:
            view.commit()  # into the batch's ledger: later requests of the batch see these reservations
