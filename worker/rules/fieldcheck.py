"""Checks of names and values against the PracticePanther catalogue: record data, OData filters,
list parameters and enum values. Each problem is an :class:`Issue` with the path of the offending
node relative to what was checked, so the caller can place it in the file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from odata_query import ast as odata_ast
from odata_query.exceptions import ODataException, ParsingException, TokenizingException
from odata_query.grammar import ODataLexer, ODataParser

from worker.hints import did_you_mean, one_of
from worker.hints import suggest as suggest  # re-exported: the checker calls fieldcheck.suggest
from worker.practicepanther import resources
from worker.practicepanther.resources import Definition, FieldSpec, Resource
from worker.rules.templating import is_template

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    path: Path_
    message: str
    hint: str | None = None
    at_key: bool = False
    severity: str = "error"
    needle: str | None = None


def definition(name: str | None) -> Definition | None:
    if not name:
        return None
    try:
        return resources.definition(name)
    except KeyError:
        return None


def check_enum(spec: FieldSpec, value: Any, path: Path_, label: str) -> Iterator[Issue]:
    """A literal value (or list of values) of an enum field must be one of its values."""
    if not spec.enum:
        return
    values = value if isinstance(value, list) else [value]
    for index, item in enumerate(values):
        if item is None or (isinstance(item, str) and is_template(item)):
            continue
        if item not in spec.enum:
            where = (*path, index) if isinstance(value, list) else path
            yield Issue(
                where,
                f"{item!r} is not a valid {spec.name} of {label}",
                did_you_mean(str(item), spec.enum) or f"expected {one_of(spec.enum)}",
            )


def _kind_ok(spec: FieldSpec, value: Any) -> bool:
    if value is None or (isinstance(value, str) and is_template(value)):
        return True
    kind = spec.kind
    if kind in ("string", "uuid", "datetime"):
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True


_KIND_WORDS = {
    "string": "text",
    "uuid": "an id (text)",
    "datetime": "a date/time (ISO 8601 text or a template)",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}


_KIND_HINTS = {
    "integer": 'e.g. 3, or a template such as "{{ record.number }}"',
    "number": 'e.g. 1.5 (no quotes), or a template such as "{{ record.hours }}"',
    "boolean": "true or false without quotes, or a template",
    "array": "write a list ([a, b] or '- item' lines) or a template that renders one",
    "object": "write a mapping ({id: ...}) or a template that renders one",
}


def check_data(
    resource: Resource, data: dict[str, Any], path: Path_, *, create: bool, label: str | None = None
) -> Iterator[Issue]:
    """Record data for a create or update: known fields, writable, right kind, enum values, and
    (on create) the required fields present (a template value counts as present)."""
    yield from _check_object(resource.model, data, path, label or resource.name, top=True)
    if create:
        missing = [name for name in resource.required_on_create if name not in data and name != "id"]
        if missing:
            names = ", ".join(repr(n) for n in missing)
            yield Issue(
                path,
                f"creating {resource.name} needs {names}",
                f"PracticePanther requires {names} on create; a template value counts",
                at_key=True,
            )
        if resource.name == "tasks" and "status" in data and data["status"] is None:
            yield Issue(
                (*path, "status"),
                "a task with status null breaks PracticePanther's web UI",
                "leave status out (NotCompleted is used) or give a value",
            )


def _check_object(
    model: Definition, data: dict[str, Any], path: Path_, label: str, *, top: bool
) -> Iterator[Issue]:
    for name, value in data.items():
        spec = model.fields.get(name)
        where = (*path, name)
        if spec is None:
            yield Issue(
                where,
                f"unknown field {name!r} on {label}",
                suggest(name, model.fields),
                at_key=True,
                needle=name,
            )
            continue
        if top and spec.read_only:
            yield Issue(
                where,
                f"{name!r} is set by PracticePanther and cannot be written",
                "remove it from data:",
                at_key=True,
            )
            continue
        if not _kind_ok(spec, value):
            yield Issue(
                where,
                f"{name!r} on {label} takes {_KIND_WORDS.get(spec.kind, spec.kind)}",
                _KIND_HINTS.get(spec.kind, "or a template that renders one"),
            )
            continue
        yield from check_enum(spec, value, where, label)
        nested = definition(spec.ref) if spec.kind == "object" else None
        if nested is not None and isinstance(value, dict):
            if spec.is_reference and "id" not in value:
                yield Issue(where, f"{name!r} needs an 'id'", f'e.g. {name}: {{id: "{{{{ record.id }}}}"}}')
            yield from _check_object(nested, value, where, name, top=False)
        item = definition(spec.item_ref) if spec.kind == "array" else None
        if item is not None and isinstance(value, list):
            for index, element in enumerate(value):
                if isinstance(element, dict):
                    yield from _check_object(item, element, (*where, index), name, top=False)


def check_fields(resource: Resource, names: dict[str, Any], path: Path_) -> Iterator[Issue]:
    """Field names used as keys (``match:``) must exist; enum literals must be valid."""
    for name, value in names.items():
        spec = resource.fields.get(name)
        if spec is None:
            yield Issue(
                (*path, name),
                f"unknown field {name!r} on {resource.name}",
                suggest(name, resource.fields),
                at_key=True,
            )
            continue
        yield from check_enum(spec, value, (*path, name), resource.name)


def check_params(resource: Resource, params: dict[str, Any], path: Path_) -> Iterator[Issue]:
    """List parameters of the resource's list endpoint (``status``, ``matter_id``, ``updated_since`` ...)."""
    for name, value in params.items():
        spec = resource.list_params.get(name)
        if spec is None:
            yield Issue(
                (*path, name),
                f"{resource.name} cannot be listed by {name!r}",
                suggest(name, resource.list_params),
                at_key=True,
            )
            continue
        if spec.enum and isinstance(value, str) and not is_template(value) and value not in spec.enum:
            yield Issue(
                (*path, name),
                f"{value!r} is not a valid {name}",
                did_you_mean(value, spec.enum) or f"expected {one_of(spec.enum)}",
            )


_TEMPLATE_RE = re.compile(r"\{\{.*?\}\}", re.S)


def _placeholder_filter(text: str) -> str:
    """The filter with each ``{{ ... }}`` replaced by a literal of the right shape for parsing."""
    out: list[str] = []
    last = 0
    for match in _TEMPLATE_RE.finditer(text):
        before = text[last : match.start()]
        out.append(before)
        inside_quotes = ("".join(out).count("'") % 2) == 1
        out.append("x" if inside_quotes else "0")
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def check_filter(text: str, model: Definition, label: str) -> Iterator[tuple[str, str | None, str | None]]:
    """An OData ``$filter``: syntax, then field names (``account_ref/display_name`` walks references).

    Yields (message, hint, needle).
    """
    if "{%" in text:
        return
    query = _placeholder_filter(text)
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(query))
    except ODataException as exc:
        yield (
            _odata_syntax(exc),
            "quote text with single quotes; dates need Z or an offset (2026-04-06T00:00:00Z)",
            None,
        )
        return
    except Exception as exc:  # the grammar raises plain errors for some inputs
        yield f"OData filter does not parse: {exc}", None, None
        return
    if tree is None:
        yield "OData filter is empty", None, None
        return
    for chain in _identifier_chains(tree):
        current: Definition | None = model
        current_label = label
        for part in chain:
            if current is None:
                break
            spec = current.fields.get(part)
            if spec is None:
                yield (
                    f"unknown field {part!r} on {current_label} in filter",
                    suggest(part, current.fields),
                    part,
                )
                break
            current = definition(spec.ref or spec.item_ref)
            current_label = part


def _odata_syntax(exc: ODataException) -> str:
    token = getattr(exc, "token", None)
    value = getattr(token, "value", None)
    if isinstance(exc, TokenizingException) and value is not None:
        return f"OData filter: cannot read {value!r}"
    if isinstance(exc, ParsingException):
        if exc.eof or value is None:
            return "OData filter ends too early"
        return f"OData filter: unexpected {value.strip() or 'space'!r}"
    return f"OData filter: {exc}"


def _identifier_chains(node: Any) -> Iterator[list[str]]:
    if isinstance(node, odata_ast.Attribute):
        chain: list[str] = [node.attr]
        owner: Any = node.owner
        while isinstance(owner, odata_ast.Attribute):
            chain.insert(0, owner.attr)
            owner = owner.owner
        if isinstance(owner, odata_ast.Identifier):
            chain.insert(0, owner.name)
            yield chain
        return
    if isinstance(node, odata_ast.Identifier):
        yield [node.name]
        return
    if isinstance(node, odata_ast.Call):
        for argument in node.args:
            yield from _identifier_chains(argument)
        return
    if isinstance(node, odata_ast.CollectionLambda):
        yield from _identifier_chains(node.owner)
        return
    for value in getattr(node, "__dict__", {}).values():
        if isinstance(value, list):
            for item in value:
                yield from _identifier_chains(item)
        elif isinstance(value, odata_ast._Node):
            yield from _identifier_chains(value)


def check_orderby(text: str, model: Definition, label: str) -> Iterator[tuple[str, str | None, str | None]]:
    for part in text.split(","):
        words = part.split()
        if not words:
            continue
        name = words[0]
        if name not in model.fields:
            yield f"unknown field {name!r} on {label} in orderby", suggest(name, model.fields), name
        if len(words) > 1 and words[1].lower() not in ("asc", "desc"):
            yield f"orderby direction must be asc or desc, not {words[1]!r}", None, words[1]
