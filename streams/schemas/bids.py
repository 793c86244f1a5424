"""OpenRTB 2.6 BidRequest / BidResponse: the subset the bidder reads and writes.

Field names, defaults and enums follow the IAB Tech Lab OpenRTB 2.6 specification. Unknown
fields are ignored on requests (exchanges send many extensions). OpenRTB has no schema
version of its own, so `schema_version` defaults to 1 on requests; our own additions to a
response (reason codes, the source record) travel in `ext`, where the specification puts them.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from streams.schemas.common import Id, InputModel, SourceRef


class AuctionType(IntEnum):
    FIRST_PRICE = 1
    SECOND_PRICE_PLUS = 2


class NoBidReason(IntEnum):
    """OpenRTB 2.6 list: No-Bid Reason Codes (the subset this bidder uses)."""

    UNKNOWN_ERROR = 0
    TECHNICAL_ERROR = 1
    INVALID_REQUEST = 2
    UNMATCHED_USER = 8
    INSUFFICIENT_AUCTION_TIME = 15
    BELOW_FLOOR = 501  # ours, in the 500+ range the specification leaves to implementers


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Imp(_Lenient):
    id: Id
    tagid: str | None = None
    bidfloor: float = Field(default=0.0, ge=0)
    bidfloorcur: str = "USD"
    secure: int | None = None


class User(_Lenient):
    id: str | None = None
    buyeruid: str | None = None


class BidRequest(InputModel):
    """Key: `user.id` when present, else the request `id`."""

    schema_version: Literal[1] = 1
    id: Id
    imp: list[Imp] = Field(min_length=1, max_length=64)
    tmax: int | None = Field(default=None, gt=0, description="Max ms to answer, including network.")
    at: AuctionType = AuctionType.SECOND_PRICE_PLUS
    cur: list[str] = Field(default_factory=lambda: ["USD"])
    user: User | None = None
    bcat: list[str] = Field(default_factory=list)
    badv: list[str] = Field(default_factory=list)
    test: Literal[0, 1] = 0

    @property
    def key(self) -> str:
        return self.user.id if self.user and self.user.id else self.id


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bid(_Strict):
    id: str
    impid: str
    price: float = Field(ge=0, description="CPM in the response currency.")
    adomain: list[str]
    crid: str
    cid: str | None = None


class SeatBid(_Strict):
    bid: list[Bid] = Field(min_length=1)
    seat: str | None = None


class ResponseExt(_Strict):
    schema_version: Literal[1] = 1
    response_id: str
    reasons: list[str]
    source: SourceRef
    propensity: float | None = None


class BidResponse(_Strict):
    id: str = Field(description="The BidRequest id this answers.")
    seatbid: list[SeatBid] = Field(default_factory=list)
    bidid: str | None = None
    cur: str = "USD"
    nbr: NoBidReason | None = None
    ext: ResponseExt
