"""The compatibility checker, on hand-made before/after schema pairs, and `python -m streams
schemas --check/--write` on a contract directory where the published schemas differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.__main__ import main
from streams.contract import compat
from streams.contract.publish import compatibility, write


def obj(props: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), **extra}


V1 = {"const": 1, "type": "integer"}
V2 = {"const": 2, "type": "integer"}
BEFORE = obj(
    {
        "schema_version": V1,
        "id": {"type": "string"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "label": {"$ref": "#/$defs/Label"},
        "note": {"anyOf": [{"type": "string", "maxLength": 64}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    ("schema_version", "id", "score", "label", "tags"),
    **{"$defs": {"Label": {"enum": ["neg", "pos"], "type": "string"}}},
)


def after(**changes: Any) -> dict[str, Any]:
    """BEFORE with properties replaced (None removes one) and `required` replaced if given."""
    schema = json.loads(json.dumps(BEFORE))
    required = changes.pop("required", None)
    for name, prop in changes.items():
        if prop is None:
            schema["properties"].pop(name)
        else:
            schema["properties"][name] = prop
    if required is not None:
        schema["required"] = list(required)
    return schema


def kinds(verdict: compat.Verdict) -> set[tuple[str, str, bool]]:
    return {(c.kind, c.path, c.breaking) for c in verdict.changes}


@pytest.mark.parametrize("written", [True, False])
def test_no_change_is_compatible(written: bool) -> None:
    verdict = compat.check("x", BEFORE, after(), written=written)
    assert verdict.changes == [] and verdict.ok


@pytest.mark.parametrize("written", [True, False])
def test_a_removed_field_breaks_both_ways(written: bool) -> None:
    verdict = compat.check(
        "x", BEFORE, after(tags=None, required=("schema_version", "id", "score", "label")), written=written
    )
    assert (compat.REMOVED_FIELD, "tags", True) in kinds(verdict) and not verdict.ok


@pytest.mark.parametrize("written", [True, False])
def test_a_changed_enum_breaks_both_ways(written: bool) -> None:
    added = compat.check(
        "x", BEFORE, after(label={"enum": ["neg", "neu", "pos"], "type": "string"}), written=written
    )
    assert kinds(added) == {(compat.CHANGED_ENUM, "label", True)}
    assert "added ['neu']" in added.changes[0].detail
    removed = compat.check("x", BEFORE, after(label={"enum": ["pos"], "type": "string"}), written=written)
    assert "removed ['neg']" in removed.changes[0].detail and not removed.ok


def test_a_new_required_field_breaks_producers_not_consumers() -> None:
    new = after(channel={"type": "string"}, required=(*BEFORE["required"], "channel"))
    read = compat.check("x", BEFORE, new, written=False)
    assert kinds(read) == {(compat.NEW_REQUIRED_FIELD, "channel", True)}
    written = compat.check("x", BEFORE, new, written=True)
    assert kinds(written) == {(compat.NEW_FIELD, "channel", False)} and written.ok


def test_an_optional_field_becoming_required_breaks_producers() -> None:
    new = after(required=(*BEFORE["required"], "note"))
    assert kinds(compat.check("x", BEFORE, new, written=False)) == {(compat.NEW_REQUIRED_FIELD, "note", True)}
    assert compat.check("x", BEFORE, new, written=True).ok


def test_a_field_no_longer_always_present_breaks_consumers() -> None:
    new = after(required=("schema_version", "id", "label", "tags"))
    assert kinds(compat.check("x", BEFORE, new, written=True)) == {(compat.NO_LONGER_REQUIRED, "score", True)}
    assert compat.check("x", BEFORE, new, written=False).ok


@pytest.mark.parametrize(
    ("prop", "new"),
    [
        ("score", {"type": "integer", "minimum": 0, "maximum": 1}),  # number -> integer
        ("score", {"type": "number", "minimum": 0, "maximum": 0.5}),  # a tighter bound
        ("note", {"type": "string", "maxLength": 64}),  # null no longer accepted
        ("note", {"anyOf": [{"type": "string", "maxLength": 32}, {"type": "null"}]}),
        ("id", {"type": "string", "pattern": "^[a-z]+$"}),
        ("tags", {"type": "array", "items": {"type": "string", "minLength": 1}}),
    ],
)
def test_a_narrowed_type_breaks_producers_not_consumers(prop: str, new: dict[str, Any]) -> None:
    read = compat.check("x", BEFORE, after(**{prop: new}), written=False)
    assert {k for k, _, _ in kinds(read)} == {compat.NARROWED_TYPE} and not read.ok
    assert compat.check("x", BEFORE, after(**{prop: new}), written=True).ok


@pytest.mark.parametrize(
    ("prop", "new"),
    [
        ("id", {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        ("score", {"type": "number", "minimum": 0}),  # the upper bound dropped
        ("note", {"anyOf": [{"type": "string"}, {"type": "null"}]}),  # maxLength dropped
    ],
)
def test_a_widened_type_breaks_consumers(prop: str, new: dict[str, Any]) -> None:
    written = compat.check("x", BEFORE, after(**{prop: new}), written=True)
    assert {k for k, _, _ in kinds(written)} == {compat.WIDENED_TYPE} and not written.ok
    assert compat.check("x", BEFORE, after(**{prop: new}), written=False).ok


def test_a_type_changed_outright_breaks_both() -> None:
    for written in (True, False):
        verdict = compat.check("x", BEFORE, after(id={"type": "integer"}), written=written)
        assert {k for k, _, _ in kinds(verdict)} == {compat.NARROWED_TYPE, compat.WIDENED_TYPE}
        assert not verdict.ok


@pytest.mark.parametrize("written", [True, False])
def test_an_additive_optional_field_is_accepted(written: bool) -> None:
    verdict = compat.check("x", BEFORE, after(channel={"type": "string"}), written=written)
    assert kinds(verdict) == {(compat.NEW_FIELD, "channel", False)} and verdict.ok


def test_nested_objects_and_refs_are_compared() -> None:
    nested = obj({"source": {"$ref": "#/$defs/Src"}}, ("source",))
    before = {
        **nested,
        "$defs": {
            "Src": obj({"topic": {"type": "string"}, "offset": {"type": "integer"}}, ("topic", "offset"))
        },
    }
    after_ = {**nested, "$defs": {"Src": obj({"topic": {"type": "string"}}, ("topic",))}}
    assert kinds(compat.check("x", before, after_, written=True)) == {
        (compat.REMOVED_FIELD, "source.offset", True)
    }


def test_closing_an_object_breaks_producers() -> None:
    closed = {**BEFORE, "additionalProperties": False}
    assert kinds(compat.check("x", BEFORE, closed, written=False)) == {(compat.NARROWED_TYPE, "", True)}
    assert compat.check("x", BEFORE, closed, written=True).ok


def test_a_schema_version_bump_allows_breaking_changes() -> None:
    new = after(schema_version=V2, tags=None, required=("schema_version", "id", "score", "label"))
    verdict = compat.check("x", BEFORE, new, written=True)
    assert verdict.breaking and verdict.bumped and verdict.ok
    assert next(verdict.report()) == "x: schema_version [1] -> [2], a new contract: every change allowed"


def test_versions_are_found_at_the_root_or_in_ext() -> None:
    assert compat.versions(BEFORE) == {1}
    in_ext = obj(
        {"ext": {"$ref": "#/$defs/Ext"}}, **{"$defs": {"Ext": obj({"schema_version": {"enum": [1, 2]}})}}
    )
    assert compat.versions(in_ext) == {1, 2}
    assert compat.versions(obj({"id": {"type": "string"}})) == frozenset()


def edit(root: Path, name: str, change: Any) -> None:
    path = root / "schemas" / f"{name}.json"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema))


def test_the_cli_refuses_to_write_a_breaking_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path)
    # as if the published schema had a field the code has since dropped
    edit(tmp_path, "segment-update", lambda s: s["properties"].update(campaign={"type": "string"}))
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "segment-update: BREAKING: removed field at campaign" in out.out
    assert main(["schemas", "--write", "--dir", str(tmp_path)]) == 1
    assert "not written: breaking changes to segment-update" in capsys.readouterr().err
    assert "campaign" in (tmp_path / "schemas" / "segment-update.json").read_text()
    assert main(["schemas", "--write", "--allow-breaking", "--dir", str(tmp_path)]) == 0
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 0


def test_the_cli_writes_an_additive_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path)
    # as if the code had just added cs-reply's optional handoff_queue
    edit(tmp_path, "cs-reply", lambda s: s["properties"].pop("handoff_queue"))
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 1  # not written yet: drift
    assert "changed: schemas/cs-reply.json" in capsys.readouterr().out
    assert main(["schemas", "--write", "--dir", str(tmp_path)]) == 0
    assert "cs-reply: additive: new field at handoff_queue" in capsys.readouterr().out
    assert [v for v in compatibility(tmp_path) if v.changes] == []


def test_a_removed_payload_or_topic_is_breaking(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "schemas" / "old-payload.json").write_text(json.dumps(obj({})))
    doc = (tmp_path / "asyncapi.yaml").read_text()
    (tmp_path / "asyncapi.yaml").write_text(
        doc.replace("channels:\n", "channels:\n  gone:\n    address: '{prefix}gone'\n", 1)
    )
    broken = {v.name: v for v in compatibility(tmp_path) if not v.ok}
    assert set(broken) == {"old-payload", "asyncapi.yaml"}
    assert broken["asyncapi.yaml"].changes[0].path == "{prefix}gone"
