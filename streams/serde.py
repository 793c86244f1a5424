"""Bytes <-> pydantic models. orjson lives here and nowhere deeper in the code.

`decode` turns every way a record can be unusable into a `BadInput` with a reason code, so the
caller has exactly two outcomes to handle: a valid model or a dead letter.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from streams.errors import BadInput, Reason
from streams.schemas.common import SUPPORTED_SCHEMA_VERSIONS

M = TypeVar("M", bound=BaseModel)

_MAX_ERRORS_IN_REASON = 3


def decode(raw: bytes | None, model: type[M], *, max_bytes: int) -> M:
    if raw is None:
        raise BadInput(Reason.NOT_JSON, "record has no value (tombstone)")
    if len(raw) > max_bytes:
        raise BadInput(Reason.OVERSIZED, f"record is {len(raw)} bytes, limit {max_bytes}")
    try:
        obj = orjson.loads(raw)  # one pass: orjson rejects invalid UTF-8 itself
    except orjson.JSONDecodeError as exc:
        try:  # only on the error path: which of the two was it?
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise BadInput(Reason.NOT_UTF8, f"invalid UTF-8 at byte {bad.start}") from exc
        raise BadInput(Reason.NOT_JSON, str(exc)) from exc
    if not isinstance(obj, dict):
        raise BadInput(Reason.NOT_OBJECT, f"top-level JSON is {type(obj).__name__}, expected an object")
    version = obj.get("schema_version", _default_version(model))
    if type(version) is not int or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise BadInput(
            Reason.UNKNOWN_SCHEMA_VERSION,
            f"schema_version {version!r} not in {sorted(SUPPORTED_SCHEMA_VERSIONS)}",
        )
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise BadInput(Reason.SCHEMA, summarize(exc)) from exc


def _default_version(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("schema_version")
    return None if field is None or field.is_required() else field.default


def summarize(exc: ValidationError) -> str:
    """Locations and messages of the first errors, never the offending values (they may be PII)."""
    errors = exc.errors(include_input=False, include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors]
    more = len(parts) - _MAX_ERRORS_IN_REASON
    text = "; ".join(parts[:_MAX_ERRORS_IN_REASON])
    return f"{text}; +{more} more" if more > 0 else text


def encode(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", exclude_none=True))


def loads(raw: bytes) -> Any:
    """Plain JSON for consumers of our own topics (tests, the demo viewer)."""
    return orjson.loads(raw)
