"""ad-events -> ad-outcomes: the exchange's win, billing and loss notices settle the bids' reservations.

A bid holds a reservation of its bid-price cost and a frequency slot (`streams.pacing`). Its
notices, verified by the HTTP gateway and written to the partition of the bid request answered,
settle it here (OpenRTB 2.6 implementation guide: spend is booked on the billing notice):

- win (`nurl`): outcome `won`; the reservation stays (marked won) until the billing notice;
- billing (`burl`): spend booked at the clearing price (`${AUCTION_PRICE}`; when the exchange
  omits it, our bid, which is the clearing price of a first-price auction and an upper bound of
  a second-price one), one delivered impression counted against the frequency cap, the
  reservation released: outcome `billed`;
- loss (`lurl`): the reservation released, outcome `lost` with the loss code and min_to_win;
- no billing or loss notice within `Settings.notice_timeout_s`: released by the worker's timer
  with outcome `expired` (`find_expired`, then `write_expired` once the outcomes are published).

A first-price bid's win (or billing) and loss teach the campaign's bid shader (`streams.shading`).

Never charged, and never silent:
- an AUDIT notice (the exchange substituted `AUDIT` for a macro: an audit or test render) is a
  no-op counted as `audit` (the `tally` callback: the worker's `ad_notices` metric);
- a notice delivered twice books once: the reservation, resolved, stays as a tombstone until the
  notice timeout, and a second notice of a kind it already booked is counted as `duplicate`. A
  record read again after a crash (its offset at or below the partition's `applied` watermark)
  sends the outcome it booked again, the same `outcome_id` (`<kind>:<bid id>`), and books nothing;
- a notice for a bid without a reservation (never reserved: a test request's bid; or deleted)
  or past the timeout, whose campaign, user, imp, bid price, time or auction type differ from the
  reservation, with a clearing price above the bid, contradicting a final notice already booked
  (a loss after the billing), or read from another partition than it names: dead-lettered with
  its reason (`streams.errors.Reason`), counted by the dead-letter metric.

The handler is Kafka-free, on the same state table as the bid route: every key it touches starts
with the record's partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from streams import shading
from streams.campaigns import Campaign, CampaignBook
from streams.dlq import dead_letter
from streams.errors import BadInput, Reason
from streams.handlers.common import Context, Outcome, Output, Record
from streams.pacing import (
    BILLED,
    LIVE_STATES,
    LOST,
    OPEN,
    WON,
    Ledger,
    Reservation,
    cost_micros,
    partition_of,
)
from streams.schemas.adevents import AdEvent, AdOutcome, NoticeKind, OutcomeKind
from streams.settings import Settings

log = logging.getLogger("streams.handlers.notices")

PRICE_EPSILON = 1e-6  # prices are signed with 4 decimals
Tally = Callable[[str, str], None]  # (notice kind, result): the worker's ad_notices metric
EXPIRE_SLICE_KEYS = 20_000  # ledger keys looked at per call of the expiry timer

_OUTCOME = {
    NoticeKind.WIN: OutcomeKind.WON,
    NoticeKind.BILLING: OutcomeKind.BILLED,
    NoticeKind.LOSS: OutcomeKind.LOST,
}


def _ignore(kind: str, result: str) -> None:
    return None


async def handle_ad_events(
    records: Sequence[Record[AdEvent]],
    ctx: Context,
    book: CampaignBook,
    state: MutableMapping[str, Any],
    tally: Tally = _ignore,
) -> list[Outcome]:
    """Settle the reservations the notices name (see the module's rules)."""
    settings = ctx.settings
    ledger = Ledger(state, partitions=settings.partitions, timeout_s=settings.notice_timeout_s)
    campaigns = {c.id: c for c in book.campaigns}
    now = ctx.now()
    out: list[Outcome] = []
    for record in records:
        meta, event = record.meta, record.value
        replay = meta.offset <= ledger.watermark(meta.topic, meta.partition)
        view = ledger.child()
        try:
            outputs, result = _settle(event, meta.partition, view, campaigns, settings, now, replay)
        except BadInput as exc:
            log.warning("%s[%d]@%d notice dead-lettered: %s", meta.topic, meta.partition, meta.offset, exc)
            out.append(
                dead_letter(meta, record.raw, exc, stage="handler", dlq_topic=settings.topics.dlq(meta.topic))
            )
            tally(event.kind.value, "dead_letter")
        else:
            view.commit()
            out.extend(outputs)
            tally(event.kind.value, result)
        ledger.advance(meta.topic, meta.partition, meta.offset)
    ledger.commit()
    return out


def _settle(
    event: AdEvent,
    partition: int,
    ledger: Ledger,
    campaigns: Mapping[str, Campaign],
    settings: Settings,
    now: datetime,
    replay: bool,
) -> tuple[list[Output], str]:
    """The outputs of one notice and what it was (an outcome kind, `duplicate`, `replayed`,
    `audit`, `late_win`); raises BadInput for a notice to dead-letter."""
    if event.partition != partition:
        raise BadInput(Reason.WRONG_PARTITION, f"names partition {event.partition}, read from {partition}")
    resv = ledger.reservation(partition, event.bid_id)
    kind = _OUTCOME[event.kind]
    if resv is not None and kind.value in resv.outcomes and replay:
        return [_output(settings, resv.user, resv.outcomes[kind.value])], "replayed"
    if event.audit:
        return [], "audit"
    if ledger.expired(event.issued_ms, now):
        raise BadInput(
            Reason.NOTICE_EXPIRED, f"bid of {event.issued_ms} ms, timeout {settings.notice_timeout_s:g} s"
        )
    if resv is None:
        raise BadInput(Reason.UNKNOWN_BID, "no reservation for this bid (a test or replayed answer, or none)")
    if mismatch := _mismatch(event, resv):
        raise BadInput(Reason.NOTICE_MISMATCH, f"{mismatch} differs from the reservation")
    if event.price is not None and event.price > resv.price + PRICE_EPSILON:
        raise BadInput(Reason.PRICE_ABOVE_BID, f"clearing {event.price:g} > bid {resv.price:g}")
    if kind.value in resv.outcomes:
        return [], "duplicate"
    if event.kind is NoticeKind.WIN and resv.state == BILLED:
        return [], "late_win"  # the billing said it already, and booked it
    allowed = {NoticeKind.WIN: (OPEN,), NoticeKind.BILLING: (OPEN, WON), NoticeKind.LOSS: (OPEN,)}
    if resv.state not in allowed[event.kind]:
        raise BadInput(Reason.NOTICE_CONFLICT, f"{event.kind.value} notice for a bid already {resv.state}")
    campaign = campaigns.get(resv.campaign)
    if campaign is None:
        raise BadInput(Reason.UNKNOWN_BID, f"campaign {resv.campaign} is no longer configured")
    outcome = _book(event, resv, campaign, partition, ledger, now)
    stored = outcome.model_dump(mode="json")
    new_state = {OutcomeKind.WON: WON, OutcomeKind.BILLED: BILLED, OutcomeKind.LOST: LOST}[kind]
    ledger.put(partition, replace(resv, state=new_state, outcomes={**resv.outcomes, kind.value: stored}))
    return [_output(settings, resv.user, stored)], kind.value


def _mismatch(event: AdEvent, resv: Reservation) -> str | None:
    pairs = {
        "campaign": (event.campaign, resv.campaign),
        "user": (event.user, resv.user),
        "imp": (event.imp_id, resv.imp),
        "issued_ms": (event.issued_ms, resv.issued_ms),
        "auction_type": (event.auction_type, resv.at),
    }
    for name, (theirs, ours) in pairs.items():
        if theirs != ours:
            return name
    return "bid_price" if abs(event.bid_price - resv.price) > PRICE_EPSILON else None


def _book(
    event: AdEvent, resv: Reservation, campaign: Campaign, partition: int, ledger: Ledger, now: datetime
) -> AdOutcome:
    charged = released = 0
    clearing = event.price
    if event.kind is NoticeKind.BILLING:
        clearing = resv.price if event.price is None else event.price
        charged, released = cost_micros(clearing), resv.micros
        ledger.release(partition, resv, now)
        ledger.charge(campaign, resv.user, partition, now, charged)
    elif event.kind is NoticeKind.LOSS:
        released = resv.micros
        ledger.release(partition, resv, now)
    if resv.at == shading.FIRST_PRICE and resv.state == OPEN:  # one update per bid, its first answer
        won = event.kind is not NoticeKind.LOSS
        shading.learn(
            ledger, resv.campaign, partition, unshaded=resv.unshaded, won=won, min_to_win=event.min_to_win
        )
    return _outcome(
        resv,
        _OUTCOME[event.kind],
        now,
        clearing_price=clearing,
        min_to_win=event.min_to_win,
        loss=event.loss,
        charged_micros=charged,
        released_micros=released,
    )


def _outcome(resv: Reservation, kind: OutcomeKind, now: datetime, **fields: Any) -> AdOutcome:
    return AdOutcome(
        outcome_id=f"{kind.value}:{resv.bid_id}",
        kind=kind,
        bid_id=resv.bid_id,
        campaign=resv.campaign,
        user=resv.user,
        auction_type=resv.at,
        bid_price=resv.price,
        bid_at=datetime.fromtimestamp(resv.issued_ms / 1000, UTC),
        at=now,
        **fields,
    )


def _output(settings: Settings, user: str, stored: Mapping[str, Any]) -> Output:
    return Output.of(settings.topics.ad_outcomes, user, AdOutcome.model_validate(stored))


# --- the reservation timeout ----------------------------------------------------------------------


@dataclass(frozen=True)
class Expiry:
    """Reservations past the notice timeout: the `expired` outcomes of the live ones, and every
    key to release and delete (resolved ones are tombstones whose time is up)."""

    outcomes: list[Output]
    keys: list[str]


def find_expired(
    state: MutableMapping[str, Any],
    keys: Iterable[str],
    *,
    now: datetime,
    settings: Settings,
    partitions: Collection[int],
) -> Expiry:
    """Look at `keys` (of the partitions this worker is active for) and say what expired. Nothing
    is written: publish the outcomes first, then `write_expired`, so a crash in between sends
    them again (the same outcome ids) rather than losing them."""
    ledger = Ledger(state, partitions=settings.partitions, timeout_s=settings.notice_timeout_s)
    outcomes, due = [], []
    for key, resv in _reservations(state, keys, partitions):
        if not ledger.expired(resv.issued_ms, now):
            continue
        due.append(key)
        if resv.state in LIVE_STATES:
            expired = _outcome(resv, OutcomeKind.EXPIRED, now, released_micros=resv.micros)
            outcomes.append(Output.of(settings.topics.ad_outcomes, resv.user, expired))
    return Expiry(outcomes, due)


def write_expired(
    state: MutableMapping[str, Any], expiry: Expiry, *, now: datetime, settings: Settings
) -> int:
    """Release the live reservations among `expiry.keys` and delete them all; returns how many
    were released. Each key is read again: only this worker writes its partitions, and a notice
    processed meanwhile is past the timeout too, so it was dead-lettered and changed nothing."""
    ledger = Ledger(state, partitions=settings.partitions, timeout_s=settings.notice_timeout_s)
    released = 0
    for key, resv in _reservations(state, expiry.keys, None):
        if resv.state in LIVE_STATES:
            ledger.release(partition_of(key), resv, now)
            released += 1
        ledger.delete(key)
    ledger.commit()
    return released


def _reservations(
    state: Mapping[str, Any], keys: Iterable[str], partitions: Collection[int] | None
) -> Iterable[tuple[str, Reservation]]:
    for key in keys:
        if "/resv/" not in key or (partitions is not None and partition_of(key) not in partitions):
            continue
        value = state.get(key)
        if isinstance(value, dict):
            yield key, Reservation.from_json(value)


class ExpirySweep:
    """`find_expired` a slice of the ledger's keys at a time, for a timer: a pass over a snapshot
    of the keys, `slice_keys` per call, then a fresh snapshot."""

    def __init__(self, state: MutableMapping[str, Any], slice_keys: int = EXPIRE_SLICE_KEYS) -> None:
        self.state, self._size = state, slice_keys
        self._keys: list[str] = []
        self._at = 0

    def step(self, now: datetime, settings: Settings, partitions: Collection[int]) -> Expiry:
        if self._at >= len(self._keys):
            self._keys, self._at = list(self.state), 0
        taken = self._keys[self._at : self._at + self._size]
        self._at += self._size
        return find_expired(self.state, taken, now=now, settings=settings, partitions=partitions)
