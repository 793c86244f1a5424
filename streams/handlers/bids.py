"""bid-requests -> ad-bids: price = propensity x value per conversion, shaded and capped.

Every request gets an answer: a bid, or a no-bid with an OpenRTB `nbr` code. A request whose
`tmax` has already passed (counted from the record's Kafka timestamp) or would pass while the
model is asked is answered with a no-bid, never with a late bid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from streams.campaigns import CampaignBook
from streams.errors import InferenceError
from streams.handlers.common import Context, Outcome, Output, Record
from streams.handlers.segments import load_profile
from streams.schemas import BidRequest, BidResponse
from streams.schemas.bids import Bid, NoBidReason, ResponseExt, SeatBid

log = logging.getLogger("streams.handlers.bids")

SAFETY_MS = 5.0  # answer at least this long before tmax: the response still has to reach the exchange
SEAT = "marketing-scorer"


def deadline_wall_s(record: Record[BidRequest]) -> float | None:
    tmax = record.value.tmax
    if tmax is None or record.meta.timestamp_ms is None:
        return None
    return (record.meta.timestamp_ms + tmax - SAFETY_MS) / 1000.0


def _no_bid(record: Record[BidRequest], nbr: NoBidReason, reason: str) -> BidResponse:
    return BidResponse(
        id=record.value.id,
        nbr=nbr,
        ext=ResponseExt(response_id=f"bid:{record.source.record_id}", reasons=[reason], source=record.source),
    )


def _bid(record: Record[BidRequest], book: CampaignBook, propensity: float, top_item: int) -> BidResponse:
    request = record.value
    campaign = next((c for c in book.campaigns if not set(c.adomain) & set(request.badv)), None)
    reasons = [f"propensity:{propensity:.4f}", f"top_item:{top_item}"]
    if campaign is None:
        return _no_bid(record, NoBidReason.BELOW_FLOOR, "all_campaigns_blocked_by_badv")
    price = campaign.price_cpm(propensity)
    bids = [
        Bid(
            id=f"{request.id}:{imp.id}",
            impid=imp.id,
            price=price,
            adomain=campaign.adomain,
            crid=campaign.crid,
            cid=campaign.id,
        )
        for imp in request.imp
        if price >= imp.bidfloor
    ]
    ext = ResponseExt(
        response_id=f"bid:{record.source.record_id}",
        reasons=[
            *reasons,
            f"campaign:{campaign.id}",
            f"price=min({campaign.max_cpm},p*{campaign.value_per_conversion}*1000*{campaign.shade})={price}",
        ],
        source=record.source,
        propensity=round(propensity, 6),
    )
    if not bids:
        return BidResponse(id=request.id, nbr=NoBidReason.BELOW_FLOOR, ext=ext)
    return BidResponse(
        id=request.id,
        seatbid=[SeatBid(bid=bids, seat=SEAT)],
        cur=request.cur[0] if request.cur else "USD",
        bidid=ext.response_id,
        ext=ext,
    )


async def handle_bids(
    records: Sequence[Record[BidRequest]], ctx: Context, book: CampaignBook
) -> list[Outcome]:
    topic = ctx.settings.topics.ad_bids
    answers: dict[int, BidResponse] = {}
    asking: list[tuple[int, list[int], float | None]] = []
    now = time.time()
    for i, record in enumerate(records):
        deadline = deadline_wall_s(record)
        if deadline is not None and now >= deadline:
            answers[i] = _no_bid(record, NoBidReason.INSUFFICIENT_AUCTION_TIME, "tmax_expired_before_scoring")
            continue
        request = record.value
        profile = load_profile(ctx, request.user.id) if request.user and request.user.id else None
        if profile is None or not profile.recent_items:
            answers[i] = _no_bid(record, NoBidReason.UNMATCHED_USER, "no_history_for_user")
            continue
        asking.append((i, profile.recent_items, deadline))
    if asking:
        deadlines = [d for _, _, d in asking if d is not None]
        mono_deadline = time.monotonic() + (min(deadlines) - time.time()) if deadlines else None
        try:
            recs = await ctx.models.recommend([h for _, h, _ in asking], deadline_s=mono_deadline)
        except InferenceError as exc:
            log.warning("recommender failed for %d bid requests: %s", len(asking), exc)
            expired = deadlines and time.time() >= min(deadlines)
            for i, _, _ in asking:
                answers[i] = _no_bid(
                    records[i],
                    NoBidReason.INSUFFICIENT_AUCTION_TIME if expired else NoBidReason.TECHNICAL_ERROR,
                    f"model_unavailable:{exc.status}",
                )
        else:
            after = time.time()
            for row, (i, _, deadline) in enumerate(asking):
                if deadline is not None and after >= deadline:
                    answers[i] = _no_bid(
                        records[i], NoBidReason.INSUFFICIENT_AUCTION_TIME, "tmax_expired_while_scoring"
                    )
                else:
                    answers[i] = _bid(records[i], book, float(recs.scores[row][0]), int(recs.items[row][0]))
    return [Output.of(topic, records[i].value.key, answers[i]) for i in range(len(records))]
