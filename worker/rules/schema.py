"""``rules/schema.json``: the JSON Schema editors use to complete and check rule files as you type.

Generated from the pydantic model (so it cannot drift from what ``ppw rules check`` accepts) plus
the catalogue: resource names, every step type and its parameters, and, per resource, the fields
of ``data:`` with their kinds and enum values. Any value that is a template (``{{ ... }}``) is
accepted where data is expected. A resource may be named as ppw names it (``time_entries``) or as
PracticePanther's API and swagger do (``timeentries``, ``TimeEntries``); ppw's names come first, so
completion offers them first. Rule files point at it with a modeline::

    # yaml-language-server: $schema=schema.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.actions.base import registry
from worker.practicepanther import resources
from worker.practicepanther.resources import Definition, FieldSpec, Resource
from worker.rules.fieldcheck import definition
from worker.rules.model import Rule

MODELINE = "# yaml-language-server: $schema=schema.json"
TEMPLATE = {"type": "string", "pattern": r"\{\{|\{%", "description": "A Jinja template"}


def _or_template(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"$ref": "#/$defs/Template"}]}


def _field_schema(spec: FieldSpec, depth: int) -> dict[str, Any]:
    description = {"description": spec.description} if spec.description else {}
    if spec.enum:
        return {**_or_template({"enum": list(spec.enum)}), **description}
    if spec.kind in ("string", "uuid", "datetime"):
        return {"type": "string", **description}
    if spec.kind == "integer":
        return {**_or_template({"type": "integer"}), **description}
    if spec.kind == "number":
        return {**_or_template({"type": "number"}), **description}
    if spec.kind == "boolean":
        return {**_or_template({"type": "boolean"}), **description}
    if spec.kind == "object":
        nested = definition(spec.ref)
        if nested is None or depth > 1:
            return {**_or_template({"type": "object"}), **description}
        return {**_or_template(_object_schema(nested, depth + 1, top=False)), **description}
    if spec.kind == "array":
        nested = definition(spec.item_ref)
        if nested is not None and depth <= 1:
            items: dict[str, Any] = _object_schema(nested, depth + 1, top=False)
        elif spec.item_kind == "string":
            items = {"type": "string"}
        else:
            items = {}
        return {**_or_template({"type": "array", "items": items}), **description}
    return description


def _object_schema(model: Definition, depth: int, *, top: bool) -> dict[str, Any]:
    properties = {
        name: _field_schema(spec, depth)
        for name, spec in model.fields.items()
        if not (top and spec.read_only)
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def data_schema(resource: Resource, *, create: bool) -> dict[str, Any]:
    """The ``data:`` of a create (required fields enforced) or update of ``resource``."""
    schema = _object_schema(resource.model, 0, top=True)
    schema["title"] = f"{resource.name} data" + (" (create)" if create else "")
    if create:
        required = [name for name in resource.required_on_create if not resources.READ_ONLY_FIELDS & {name}]
        if required:
            schema["required"] = required
    return schema


def _by_resource(names: list[str], kind: str, key: str = "data") -> list[dict[str, Any]]:
    """``data:`` checked against the fields of the step's resource, however the rule spells it
    (``time_entries``, ``timeentries`` or ``TimeEntries``)."""
    return [
        {
            "if": {
                "properties": {"resource": {"enum": list(resources.spellings(name))}},
                "required": ["resource"],
            },
            "then": {"properties": {key: {"$ref": f"#/$defs/data.{kind}.{name}"}}},
        }
        for name in names
    ]


def build_schema() -> dict[str, Any]:
    """The whole schema document."""
    rule = Rule.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = rule.pop("$defs", {})
    defs["Rule"] = rule
    defs["Template"] = TEMPLATE
    creatable = sorted(r.name for r in resources.creatable())
    updatable = sorted(n for n, r in resources.catalogue().items() if r.can_update)
    for name in creatable:
        defs[f"data.create.{name}"] = data_schema(resources.get(name), create=True)
    for name in sorted(set(updatable) | set(creatable)):
        defs[f"data.update.{name}"] = data_schema(resources.get(name), create=False)
    capable = {"create": creatable, "update": updatable}
    for step_type in registry().values():
        if step_type.data_schema is None:
            continue
        kind, which = step_type.data_schema
        defs[step_type.params.__name__]["allOf"] = _by_resource(capable[which], kind)
        for shorthand, resource in step_type.shorthands.items():
            step = defs[f"Step_{shorthand}"]
            step["properties"]["with"] = {"$ref": f"#/$defs/data.{kind}.{resource}"}
    rule["properties"]["rate_limit"] = {
        "anyOf": [
            {"$ref": "#/$defs/RateLimit"},
            {"type": "string", "pattern": r"^\s*\d+\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$"},
            {"type": "null"},
        ],
        "description": rule["properties"]["rate_limit"].get("description", ""),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ppw rules",
        "description": "A ppw rule file: one rule or a list of rules. Generated by `ppw rules schema`.",
        "anyOf": [{"$ref": "#/$defs/Rule"}, {"type": "array", "items": {"$ref": "#/$defs/Rule"}}],
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    """The schema as written to disk (stable key order, trailing newline)."""
    return json.dumps(build_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write(path: Path) -> bool:
    """Write the schema to ``path``; True when the file changed."""
    text = render()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True
