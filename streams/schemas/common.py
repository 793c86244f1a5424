"""Pieces shared by every payload."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SUPPORTED_SCHEMA_VERSIONS: frozenset[int] = frozenset({1})

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


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
