"""What happened after a bid: the notices an exchange sends back, and what the worker booked.

`ad-events` (input of the worker, written by the HTTP gateway after it verified a notice URL's
signature, `streams.signing`): one `AdEvent` per win (`nurl`), billing (`burl`) or loss (`lurl`)
notice. It is written to the partition named in the signed URL, which is the partition of the
`bid-requests` record the bid answered: the partition whose worker holds the campaign's spend,
the reservation and the user's caps. Its key is the bid's user key, as on `bid-requests`.

`ad-outcomes` (output): one `AdOutcome` per booking the worker made from a notice or a
reservation timeout, with the bid's context (campaign, user, what we bid, what it cleared at,
what it would have taken to win). A learning loop (bid shading, pacing, propensity calibration)
consumes this topic: every bid we placed ends in exactly one final outcome (billed, lost or
expired), and a win adds one more.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StrictInt

from streams.schemas.common import Id, InputModel, OutputModel

Cpm = Annotated[float, Field(ge=0)]


class NoticeKind(StrEnum):
    """OpenRTB 2.6 section 4.3.1: `nurl` win, `burl` billing, `lurl` loss."""

    WIN = "win"
    BILLING = "billing"
    LOSS = "loss"


class AdEvent(InputModel):
    """A verified notice. The fields up to `auction_type` come from the signed part of the URL
    (we wrote them when we bid); the others are the exchange's macro substitutions."""

    schema_version: Literal[1] = 1
    kind: NoticeKind
    bid_id: Id = Field(description="Our Bid.id: `<request id>:<imp id>`.")
    imp_id: Id
    campaign: Id
    user: Id = Field(description="The bid request's key (user.id, else the request id).")
    partition: StrictInt = Field(ge=0, description="Partition of the bid-requests record answered.")
    bid_price: Cpm = Field(description="The CPM we bid, as signed.")
    issued_ms: StrictInt = Field(ge=0, description="When we bid (epoch ms), as signed.")
    auction_type: StrictInt = Field(description="The request's `at`: 1 first price, 2 second price.")
    price: Cpm | None = Field(
        default=None, description="${AUCTION_PRICE}: the clearing CPM (None when absent or AUDIT)."
    )
    loss: StrictInt | None = Field(default=None, description="${AUCTION_LOSS}: the loss reason code.")
    min_to_win: Cpm | None = Field(
        default=None, description="${AUCTION_MIN_TO_WIN}: the lowest CPM that would have won."
    )
    audit: bool = Field(
        default=False, description="The exchange substituted AUDIT for a macro: never charged."
    )
    received: AwareDatetime = Field(description="When our notice endpoint received it.")

    @property
    def key(self) -> str:
        return self.user

    @property
    def notice_id(self) -> str:
        """One per bid and kind: a notice delivered twice has the same one."""
        return f"{self.kind.value}:{self.bid_id}"


class OutcomeKind(StrEnum):
    WON = "won"  # win notice: the impression is ours (the reservation stays until billing)
    BILLED = "billed"  # billing notice: spend booked at the clearing price, frequency counted
    LOST = "lost"  # loss notice: reservation released
    EXPIRED = "expired"  # no billing or loss notice within the notice timeout: reservation released


class AdOutcome(OutputModel):
    """Key: the user key (as the bid). Id: `<kind>:<bid id>`, stable across a replay."""

    outcome_id: str
    kind: OutcomeKind
    bid_id: str
    campaign: str
    user: str
    auction_type: int
    bid_price: Cpm
    clearing_price: Cpm | None = None
    min_to_win: Cpm | None = None
    loss: int | None = None
    charged_micros: StrictInt = Field(default=0, ge=0, description="Spend booked by this outcome.")
    released_micros: StrictInt = Field(default=0, ge=0, description="Reservation released by this outcome.")
    bid_at: AwareDatetime
    at: AwareDatetime
