"""Is a payload's new JSON Schema compatible with the published one? Within a `schema_version`,
changes must be additive only; this says which changes are not.

Who a change hurts depends on who writes the payload:

- The worker writes it (outputs): a consumer built on the published schema must still read every
  record. Breaking: a field removed, a field no longer always present, a type widened (a value
  the consumer never had to handle, looser bounds included).
- Others write it and the worker reads it (inputs): a producer built on the published schema
  must still be accepted. Breaking: a field removed (what it sends would be ignored), a new
  required field, a type narrowed (a value it sends is rejected, tighter bounds included).
- An enum that changes breaks both: consumers switch over enums, producers send old values.

So a new field the worker always writes is additive for an output, and a relaxed constraint is
additive for an input. A higher `schema_version` makes any change acceptable: it is a new
contract, which consumers adopt on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

REMOVED_FIELD = "removed field"
NEW_FIELD = "new field"
NEW_REQUIRED_FIELD = "new required field"
NO_LONGER_REQUIRED = "field no longer required"
NARROWED_TYPE = "narrowed type"
WIDENED_TYPE = "widened type"
CHANGED_TYPE = "changed type"
CHANGED_ENUM = "changed enum"

ANY = frozenset({"null", "boolean", "integer", "number", "string", "array", "object"})
LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
EXACT = ("pattern", "format")


@dataclass(frozen=True)
class Change:
    path: str
    kind: str
    detail: str
    breaking: bool

    def __str__(self) -> str:
        return f"{'BREAKING' if self.breaking else 'additive'}: {self.kind} at {self.path or '<root>'}: {self.detail}"


@dataclass(frozen=True)
class Verdict:
    name: str
    changes: list[Change]
    before_versions: frozenset[int] = frozenset()
    after_versions: frozenset[int] = frozenset()

    @property
    def bumped(self) -> bool:
        return bool(self.after_versions) and max(self.after_versions) > max(self.before_versions, default=0)

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.breaking]

    @property
    def ok(self) -> bool:
        return self.bumped or not self.breaking

    def report(self) -> Iterator[str]:
        versions = f"schema_version {sorted(self.before_versions)} -> {sorted(self.after_versions)}"
        if self.bumped:
            yield f"{self.name}: {versions}, a new contract: every change allowed"
        for change in self.changes:
            yield f"{self.name}: {change}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _accepted(types: set[str]) -> set[str]:
    """JSON types a set of `type`s accepts: every integer is a number."""
    return types | {"integer"} if "number" in types else types


def _openness(additional: Any) -> int:
    """`additionalProperties`: false admits none, a schema some, true (the default) any."""
    return 0 if additional is False else 2 if additional is True else 1


def _group(json_type: str) -> str:
    return "numeric" if json_type in ("integer", "number") else json_type


@dataclass
class _Walk:
    before_root: dict[str, Any]
    after_root: dict[str, Any]
    written: bool
    changes: list[Change] = field(default_factory=list)
    _active: set[tuple[str, str]] = field(default_factory=set)

    def note(self, path: str, kind: str, detail: str, *, breaking: bool) -> None:
        self.changes.append(Change(path, kind, detail, breaking))

    def narrowed(self, path: str, detail: str) -> None:
        self.note(path, NARROWED_TYPE, detail, breaking=not self.written)

    def widened(self, path: str, detail: str) -> None:
        self.note(path, WIDENED_TYPE, detail, breaking=self.written)

    @staticmethod
    def resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
        """Follow local `$ref`s; keywords beside a `$ref` (a description) are kept."""
        while "$ref" in node:
            target: Any = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        if len(node.get("allOf", ())) == 1:
            node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
            return _Walk.resolve(root, node)
        return node

    def branches(self, root: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
        node = self.resolve(root, node)
        subs = node.get("anyOf") or node.get("oneOf")
        if not subs:
            return [node]
        return [b for sub in subs for b in self.branches(root, sub)]

    @staticmethod
    def types(branch: dict[str, Any]) -> set[str]:
        if "const" in branch:
            return {_json_type(branch["const"])}
        if "enum" in branch:
            return {_json_type(v) for v in branch["enum"]}
        declared = branch.get("type")
        if declared is None:
            return set(ANY)
        return set(declared) if isinstance(declared, list) else {declared}

    def compare(self, before: dict[str, Any], after: dict[str, Any], path: str) -> None:
        key = (str(before.get("$ref", id(before))), str(after.get("$ref", id(after))))
        if key in self._active:  # a recursive model: this pair is being compared further up
            return
        self._active.add(key)
        b_branches = self.branches(self.before_root, before)
        a_branches = self.branches(self.after_root, after)
        b_types = _accepted(set().union(*(self.types(b) for b in b_branches)))
        a_types = _accepted(set().union(*(self.types(a) for a in a_branches)))
        if lost := b_types - a_types:
            self.narrowed(path, f"no longer accepts {sorted(lost)}")
        if gained := a_types - b_types:
            self.widened(path, f"now also accepts {sorted(gained)}")
        for group in sorted({_group(t) for t in b_types & a_types}):
            b_of = [b for b in b_branches if group in {_group(t) for t in self.types(b)}]
            a_of = [a for a in a_branches if group in {_group(t) for t in self.types(a)}]
            if len(b_of) == 1 and len(a_of) == 1:
                self.compare_branch(b_of[0], a_of[0], path, group)
            elif b_of != a_of:  # several schemas of one type: no order between them to compare
                self.note(path, CHANGED_TYPE, f"the {group} alternatives changed", breaking=True)
        self._active.discard(key)

    def compare_branch(self, before: dict[str, Any], after: dict[str, Any], path: str, group: str) -> None:
        b_enum = self.enum(before)
        a_enum = self.enum(after)
        if b_enum != a_enum:
            self.note(path, CHANGED_ENUM, self.enum_detail(b_enum, a_enum), breaking=True)
        for name in LOWER_BOUNDS:
            self.bound(path, name, before.get(name), after.get(name), lower=True)
        for name in UPPER_BOUNDS:
            self.bound(path, name, before.get(name), after.get(name), lower=False)
        for name in EXACT:
            b, a = before.get(name), after.get(name)
            if b != a:
                if b is not None:
                    self.widened(path, f"{name} {b!r} dropped" if a is None else f"{name} {b!r} -> {a!r}")
                if a is not None:
                    self.narrowed(path, f"{name} {a!r} added" if b is None else f"{name} {b!r} -> {a!r}")
        if group == "object":
            self.compare_object(before, after, path)
        if (
            group == "array"
            and isinstance(before.get("items"), dict)
            and isinstance(after.get("items"), dict)
        ):
            self.compare(before["items"], after["items"], f"{path}[]")

    @staticmethod
    def enum(branch: dict[str, Any]) -> list[Any] | None:
        if "const" in branch:
            return [branch["const"]]
        values = branch.get("enum")
        return None if values is None else sorted(values, key=repr)

    @staticmethod
    def enum_detail(before: list[Any] | None, after: list[Any] | None) -> str:
        if before is None:
            return f"restricted to {after}"
        if after is None:
            return f"no longer restricted to {before}"
        parts = []
        if added := [v for v in after if v not in before]:
            parts.append(f"added {added}")
        if removed := [v for v in before if v not in after]:
            parts.append(f"removed {removed}")
        return ", ".join(parts)

    def bound(self, path: str, name: str, before: Any, after: Any, *, lower: bool) -> None:
        if before == after:
            return
        tighter = after is not None and (before is None or (after > before if lower else after < before))
        if tighter:
            self.narrowed(path, f"{name} {before} -> {after}")
        else:
            self.widened(path, f"{name} {before} -> {after}")

    def compare_object(self, before: dict[str, Any], after: dict[str, Any], path: str) -> None:
        b_props, a_props = before.get("properties", {}), after.get("properties", {})
        b_req, a_req = set(before.get("required", ())), set(after.get("required", ()))
        prefix = f"{path}." if path else ""
        for name in b_props:
            where = prefix + name
            if name not in a_props:
                self.note(where, REMOVED_FIELD, "it was published", breaking=True)
                continue
            self.compare(b_props[name], a_props[name], where)
            if name in a_req and name not in b_req:
                self.note(where, NEW_REQUIRED_FIELD, "was optional", breaking=not self.written)
            if name in b_req and name not in a_req:
                self.note(where, NO_LONGER_REQUIRED, "may be absent now", breaking=self.written)
        for name in a_props:
            if name in b_props:
                continue
            if name in a_req and not self.written:
                self.note(prefix + name, NEW_REQUIRED_FIELD, "producers do not send it", breaking=True)
            else:
                present = "always present" if name in a_req else "optional"
                self.note(
                    prefix + name,
                    NEW_FIELD,
                    f"{present}; consumers ignore fields they do not know",
                    breaking=False,
                )
        b_extra, a_extra = before.get("additionalProperties", True), after.get("additionalProperties", True)
        if isinstance(b_extra, dict) and isinstance(a_extra, dict):
            self.compare(b_extra, a_extra, f"{path}{{}}")
        elif _openness(a_extra) > _openness(b_extra):
            self.widened(path, f"additionalProperties {b_extra} -> {a_extra}")
        elif _openness(a_extra) < _openness(b_extra):
            self.narrowed(path, f"additionalProperties {b_extra} -> {a_extra}")


def versions(schema: dict[str, Any]) -> frozenset[int]:
    """The `schema_version` values a schema admits: at its root, or one object down (a
    BidResponse carries it in `ext`)."""
    walk = _Walk(schema, schema, written=True)
    root = walk.resolve(schema, schema)
    candidates = [root, *(walk.resolve(schema, p) for p in root.get("properties", {}).values())]
    for node in candidates:
        prop = node.get("properties", {}).get("schema_version")
        if prop is not None:
            values = walk.enum(walk.resolve(schema, prop)) or []
            return frozenset(v for v in values if isinstance(v, int))
    return frozenset()


def check(name: str, before: dict[str, Any], after: dict[str, Any], *, written: bool) -> Verdict:
    """How `after` differs from the published `before`, for a payload the worker writes or reads."""
    walk = _Walk(before, after, written)
    walk.compare(before, after, "")
    return Verdict(name, walk.changes, versions(before), versions(after))
