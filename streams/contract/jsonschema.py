"""JSON Schemas of the payloads, generated from the pydantic models.

Two things differ from pydantic's defaults, both so that a schema says what is on the wire:

- A payload the worker writes is described as `streams.serde.encode` writes it: `exclude_none`
  drops every None, so a nullable field is optional and never `null`, and every other field is
  always present (required), defaults included. A payload the worker reads is described as it
  validates it (defaults make a field optional).
- No object forbids additional properties. The output models are strict (`extra="forbid"`) so
  that the worker never writes an undocumented field, but within a `schema_version` fields may
  be added: a consumer that rejected unknown fields would break on an additive change, so the
  published schemas tell consumers to accept them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue, models_json_schema
from pydantic_core import CoreSchema, core_schema

from streams.contract.catalogue import Payload

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _unwrap(schema: CoreSchema) -> CoreSchema:
    """A field's value schema without its default and its None (neither reaches the wire)."""
    if schema["type"] == "default":
        schema = schema["schema"]
    if schema["type"] == "nullable":
        schema = schema["schema"]
    return schema


class ContractSchema(GenerateJsonSchema):
    """`serialization` mode describes what the worker writes, `validation` what it accepts."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # "Update Id" next to update_id says nothing, and names generated types badly

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "validation":
            return super().field_is_required(field, total)
        inner = field["schema"]
        if inner["type"] == "default":
            inner = inner["schema"]
        return inner["type"] != "nullable"

    def model_field_schema(self, schema: core_schema.ModelField) -> JsonSchemaValue:
        if self.mode == "validation":
            return super().model_field_schema(schema)
        return self.generate_inner(_unwrap(schema["schema"]))


def mode(payload: Payload) -> JsonSchemaMode:
    return "serialization" if payload.written else "validation"


def _open(node: Any) -> Any:
    """The schema with every `additionalProperties: false` removed (see the module docstring)."""
    if isinstance(node, dict):
        return {k: _open(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [_open(v) for v in node]
    return node


def payload_schema(payload: Payload) -> dict[str, Any]:
    """The standalone JSON Schema (2020-12) of one payload, as published in contract/schemas/."""
    body = payload.model.model_json_schema(mode=mode(payload), schema_generator=ContractSchema)
    return {"$schema": DIALECT, **_open(body)}


def component_schemas(payloads: tuple[Payload, ...]) -> tuple[dict[str, str], dict[str, Any]]:
    """Every payload's schema with shared definitions, for the AsyncAPI document's components:
    returns (payload name -> component name, component name -> schema)."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(p.model, mode(p)) for p in payloads]
    refs, defs = models_json_schema(
        models, ref_template="#/components/schemas/{model}", schema_generator=ContractSchema
    )
    names = {p.name: refs[(p.model, mode(p))]["$ref"].rsplit("/", 1)[1] for p in payloads}
    return names, _open(defs.get("$defs", {}))
