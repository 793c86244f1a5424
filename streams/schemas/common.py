"""Pieces shared by every payload."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

SUPPORTED_SCHEMA_VERSIONS: frozenset[int] = frozenset({1})

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]

EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(3000, 1, 1, tzinfo=UTC)


def _plausible(ts: datetime) -> datetime:
    """ISO 8601 admits times that exist only in their own offset (`0001-01-01T00:00+14:00` is in
    year 0 in UTC): the window and segment arithmetic downstream then overflows. A brand window
    stored with such a time made the window-closing timer raise (`ValueError: year 0 is out of
    range`), which ends Faust's timer loop: no quiet window of any brand was closed again."""
    try:
        utc = ts.astimezone(UTC)
    except OverflowError:
        raise ValueError("event time is not representable in UTC") from None
    if not EARLIEST_EVENT_TIME <= utc < LATEST_EVENT_TIME:
        raise ValueError("event time must be from 1970 to 2999 (UTC)")
    return ts


EventTime = Annotated[AwareDatetime, AfterValidator(_plausible)]
"""An input's event time: timezone-aware and within [1970, 3000) UTC. How far ahead of the
worker's clock it may be is checked by the pipeline (`Settings.max_event_skew_s`)."""


class InputModel(BaseModel):
    """Base of input payloads: unknown fields are ignored on purpose (forward compatibility)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal[1]


class OutputModel(BaseModel):
    """Base of output payloads: exactly the documented fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1


class SourceRef(BaseModel):
    """Where an output came from. `topic/partition/offset` is unique per input record, so output ids
    built from it are stable across a redelivery and consumers can drop duplicates by id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)

    @property
    def record_id(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"
