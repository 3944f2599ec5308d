"""The resource catalogue: what PracticePanther exposes, read from its own published swagger.

One place answers "what fields does a matter have, which are references, which are required on
create, which list filters exist, can it be updated?". The poller, rule validation, the actions and
the sandbox all read it, so they cannot drift apart; ``tests/test_resources.py`` fails when this
module and the shared swagger disagree.

The swagger ships inside the package (``swagger-v2.json`` beside this file) so an installed worker
needs nothing else on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources as importlib_resources
from typing import Any

API_PREFIX = "/api/v2"
READ_ONLY_FIELDS = frozenset({"id", "created_at", "updated_at"})

# Friendly resource name (used in rules, settings and the CLI) -> collection path segment as
# published (case-sensitive on the live service).
_RESOURCE_SEGMENTS: dict[str, str] = {
    "accounts": "accounts",
    "bank_accounts": "bankaccounts",
    "call_logs": "calllogs",
    "contacts": "contacts",
    "custom_fields": "customfields",
    "emails": "emails",
    "events": "events",
    "expense_categories": "ExpenseCategories",
    "expenses": "Expenses",
    "files": "files",
    "flat_fees": "flatfees",
    "invoices": "invoices",
    "items": "Items",
    "matters": "matters",
    "messages": "messages",
    "notes": "notes",
    "payments": "payments",
    "relationships": "relationships",
    "tags": "tags",
    "tasks": "tasks",
    "time_entries": "timeentries",
    "users": "users",
}


@dataclass(frozen=True)
class FieldSpec:
    """One property of a swagger definition.

    ``kind`` is one of: string, integer, number, boolean, datetime, uuid, object, array.
    For ``object`` (references such as ``matter_ref``) ``ref`` names the definition; for ``array``
    ``item_kind`` and ``item_ref`` describe the elements.
    """

    name: str
    kind: str
    ref: str | None = None
    item_kind: str | None = None
    item_ref: str | None = None
    enum: tuple[str, ...] | None = None
    required: bool = False
    description: str = ""

    @property
    def is_reference(self) -> bool:
        """A ``*_ref`` field: an object carrying at least an ``id`` (compared by id)."""
        return self.kind == "object" and self.ref is not None and self.ref.endswith("Reference")

    @property
    def read_only(self) -> bool:
        return self.name in READ_ONLY_FIELDS


@dataclass(frozen=True)
class Definition:
    """A swagger definition (model) with its fields."""

    name: str
    fields: dict[str, FieldSpec]
    required: tuple[str, ...]


@dataclass(frozen=True)
class ParamSpec:
    """A query parameter accepted by a list endpoint."""

    name: str
    kind: str
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Resource:
    """A PracticePanther collection and what can be done with it."""

    name: str
    segment: str
    definition: str
    detail_definition: str
    list_paths: dict[str, str]
    list_params: dict[str, ParamSpec]
    can_get: bool
    can_create: bool
    can_update: bool
    can_delete: bool
    operations: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @property
    def path(self) -> str:
        """The collection path: list (when listable), POST, PUT ?id= and DELETE ?id=."""
        return f"{API_PREFIX}/{self.segment}"

    def item_path(self, record_id: str) -> str:
        return f"{self.path}/{record_id}"

    @property
    def can_list(self) -> bool:
        return bool(self.list_paths)

    @property
    def model(self) -> Definition:
        return definition(self.definition)

    @property
    def fields(self) -> dict[str, FieldSpec]:
        return self.model.fields

    @property
    def required_on_create(self) -> tuple[str, ...]:
        return self.model.required

    @property
    def has_timestamps(self) -> bool:
        """Whether records carry ``created_at``/``updated_at`` (contacts, for one, do not)."""
        return "updated_at" in self.fields and "created_at" in self.fields

    @property
    def reference_fields(self) -> dict[str, FieldSpec]:
        return {n: f for n, f in self.fields.items() if f.is_reference}

    @property
    def enum_fields(self) -> dict[str, FieldSpec]:
        return {n: f for n, f in self.fields.items() if f.enum}

    @property
    def pollable(self) -> bool:
        """Whether the poller can watch it: listable and filterable by update time."""
        return self.can_list and "updated_since" in self.list_params


@cache
def swagger() -> dict[str, Any]:
    """The packaged copy of PracticePanther's swagger 2.0 document."""
    text = (
        importlib_resources.files("worker.practicepanther")
        .joinpath("swagger-v2.json")
        .read_text(encoding="utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _kind(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "object"
    kind = str(schema.get("type", "object"))
    fmt = schema.get("format")
    if kind == "string" and fmt == "date-time":
        return "datetime"
    if kind == "string" and fmt == "uuid":
        return "uuid"
    return kind


def _field(name: str, schema: dict[str, Any], required: bool) -> FieldSpec:
    items = schema.get("items") or {}
    enum = schema.get("enum")
    return FieldSpec(
        name=name,
        kind=_kind(schema),
        ref=_ref_name(schema),
        item_kind=_kind(items) if schema.get("type") == "array" else None,
        item_ref=_ref_name(items) if schema.get("type") == "array" else None,
        enum=tuple(enum) if enum else None,
        required=required,
        description=str(schema.get("description", "")),
    )


@cache
def definition(name: str) -> Definition:
    """A swagger definition by name (``Matter``, ``AccountReference`` ...)."""
    raw = swagger()["definitions"][name]
    required = tuple(raw.get("required", ()))
    fields = {
        prop: _field(prop, schema, prop in required) for prop, schema in raw.get("properties", {}).items()
    }
    return Definition(name=name, fields=fields, required=required)


def _operations_for(segment: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    base = f"{API_PREFIX}/{segment}"
    for path, ops in swagger()["paths"].items():
        if path == base or path.startswith(base + "/"):
            for method, op in ops.items():
                yield method.upper(), path, op


def _build(name: str, segment: str) -> Resource:
    base = f"{API_PREFIX}/{segment}"
    list_paths: dict[str, str] = {}
    list_params: dict[str, ParamSpec] = {}
    can_get = can_create = can_update = can_delete = False
    definition_name = detail_name = ""
    operations: set[tuple[str, str]] = set()
    for method, path, op in _operations_for(segment):
        operations.add((method, path))
        schema = op["responses"]["200"]["schema"]
        ref = _ref_name(schema) or _ref_name(schema.get("items") or {}) or ""
        rest = path[len(base) :].strip("/")
        if method == "GET" and rest == "{id}":
            can_get = True
            detail_name = ref
        elif method == "GET" and "{" not in rest and not rest.startswith("download"):
            if rest == "me":
                continue
            list_paths[rest] = path
            definition_name = definition_name or ref
            for param in op.get("parameters", []):
                if param.get("in") == "query":
                    enum = param.get("enum")
                    list_params[param["name"]] = ParamSpec(
                        param["name"], _kind(param), tuple(enum) if enum else None
                    )
        elif path == base and method == "POST":
            can_create = True
        elif path == base and method == "PUT":
            can_update = True
        elif path == base and method == "DELETE":
            can_delete = True
    definition_name = definition_name or detail_name
    return Resource(
        name=name,
        segment=segment,
        definition=definition_name,
        detail_definition=detail_name or definition_name,
        list_paths=list_paths,
        list_params=list_params,
        can_get=can_get,
        can_create=can_create,
        can_update=can_update,
        can_delete=can_delete,
        operations=frozenset(operations),
    )


@cache
def catalogue() -> dict[str, Resource]:
    """Every resource by its friendly name (``matters``, ``time_entries`` ...)."""
    return {name: _build(name, segment) for name, segment in _RESOURCE_SEGMENTS.items()}


_ALIASES = {seg.lower(): name for name, seg in _RESOURCE_SEGMENTS.items()} | {
    name.replace("_", ""): name for name in _RESOURCE_SEGMENTS
}


def resolve_name(name: str) -> str | None:
    """The catalogue name for ``name`` or one of its spellings (``timeentries``, ``TimeEntries``).

    People copy names from PracticePanther's API and swagger as often as from ppw's docs, so case,
    ``_`` and ``-`` are ignored: ``time_entries``, ``timeentries``, ``TimeEntries`` and
    ``time-entries`` are one resource. Everything downstream (messages, run history, metrics, state
    keys) uses the returned catalogue name, so the spelling a user chose never splits one resource in
    two.
    """
    if name in _RESOURCE_SEGMENTS:
        return name
    return _ALIASES.get(name.lower().replace("_", "").replace("-", ""))


@cache
def spellings(name: str) -> tuple[str, ...]:
    """The spellings of the catalogue resource ``name`` worth offering, ppw's own first.

    ``("time_entries", "timeentries", "TimeEntries")``: the catalogue name, the collection path
    segment as published (and lower-cased) and the swagger's tag for it (and lower-cased). The
    editor schema lists these; :func:`resolve_name` accepts any casing of them too.
    """
    resource = catalogue()[name]
    tags = sorted({str(tag) for _, _, op in _operations_for(resource.segment) for tag in op.get("tags", ())})
    found = [name, resource.segment, resource.segment.lower(), *tags, *(tag.lower() for tag in tags)]
    return tuple(spelling for spelling in dict.fromkeys(found) if resolve_name(spelling) == name)


def get(name: str) -> Resource:
    """The resource called ``name`` (or an alias); ``KeyError`` names the known ones."""
    resolved = resolve_name(name)
    if resolved is None:
        known = ", ".join(sorted(_RESOURCE_SEGMENTS))
        raise KeyError(f"unknown resource {name!r}; known resources: {known}")
    return catalogue()[resolved]


def by_segment(segment: str) -> Resource | None:
    """The resource whose collection path segment is ``segment`` (exact, case-sensitive)."""
    for resource in catalogue().values():
        if resource.segment == segment:
            return resource
    return None


def pollable() -> list[Resource]:
    return [r for r in catalogue().values() if r.pollable]


def creatable() -> list[Resource]:
    return [r for r in catalogue().values() if r.can_create]
