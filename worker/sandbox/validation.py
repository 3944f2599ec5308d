"""Model binding for request bodies, the way PracticePanther's ASP.NET Web API does it.

A body is checked field by field against the swagger definition from the catalogue: required
fields, enum values, value types (converted as Json.NET converts: ``"1.5"`` is a fine number,
``"abc"`` is not), and that every reference (``matter_ref``, ``billed_by_user_ref`` ...) names a
record that exists. Custom field values (``custom_field_values``, ``company_custom_field_values``)
are checked against the definitions they name, as the swagger describes the slots: the field
must be one of the record's scope (matter, contact, company), the value must sit in the slot its
type uses (see :data:`CUSTOM_FIELD_SLOTS`) and a dropdown's value must be one of its options.
All problems are collected into one ``modelState`` map keyed ``<parameter>.<field>``
(``value.subject``, ``value.matter_ref.id``, ``value.tags[0]``), the parameter being the
swagger's body parameter name, and answered as one 400.

The result is the stored form of the record: every writable field of the definition present
(``None`` when the client left it out, because PUT is a full replace), references reduced to
``{"id": ...}``, dates normalised to naive UTC.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from worker.practicepanther.resources import READ_ONLY_FIELDS, Definition, FieldSpec, Resource, definition
from worker.sandbox.clock import format_date_value, parse_timestamp
from worker.sandbox.errors import invalid
from worker.sandbox.store import Database, Row

# Reference definitions -> the tables their ids point into (an activity is any of several).
REFERENCE_TARGETS: dict[str, tuple[str, ...]] = {
    "AccountReference": ("accounts",),
    "MatterReference": ("matters",),
    "UserReference": ("users",),
    "ContactReference": ("contacts",),
    "ItemReference": ("items",),
    "CustomFieldRef": ("custom_fields",),
    "ExpenseCategory": ("expense_categories",),
    "BankAccount": ("bank_accounts",),
    "FileReference": ("files",),
    "ActivityReference": ("tasks", "events", "notes", "call_logs", "emails"),
}

# The CustomFieldValue slot each value type uses, from the swagger's descriptions of the slots
# ("Used only if CustomField.Type == ..."); TextBox, which they do not name, is text too. Kept
# here rather than taken from ppw's client code so that the double checks ppw, not itself.
CUSTOM_FIELD_SLOTS: dict[str, str] = {
    "TextBox": "value_string",
    "TextEditor": "value_string",
    "DropDownList": "value_string",
    "Number": "value_number",
    "Currency": "value_number",
    "Date": "value_date_time",
    "DateTime": "value_date_time",
    "Checkbox": "value_boolean",
    "Contact": "contact_ref",
}
CUSTOM_VALUE_SLOTS = ("value_string", "value_number", "value_date_time", "value_boolean", "contact_ref")
# Which definitions scope the custom field values of a model may name.
CUSTOM_VALUE_SCOPES: dict[str, str] = {"Matter": "matter", "Contact": "contact", "Account": "company"}
CUSTOM_VALUE_FIELDS = frozenset({"custom_field_values", "company_custom_field_values"})

# Fields the server computes; a client's value is ignored (the swagger marks most readOnly).
COMPUTED: dict[str, frozenset[str]] = {
    "Account": frozenset({"display_name"}),
    "Matter": frozenset({"display_name"}),
    "Contact": frozenset({"account_ref", "is_primary_contact", "display_name", "status"}),
    "File": frozenset({"size", "content_type"}),
    "Email": frozenset({"attachments"}),
    "Expense": frozenset({"amount"}),
    "Invoice": frozenset({"total_outstanding"}),
}
# Computed fields a person in the web UI can still set (``/_sandbox/mutate`` is trusted).
TRUSTED_WRITABLE = frozenset({"status", "size", "content_type", "attachments"})

_TYPE_NAMES = {
    "string": "System.String",
    "integer": "System.Int32",
    "number": "System.Double",
    "boolean": "System.Boolean",
    "datetime": "System.DateTime",
    "uuid": "System.Guid",
}


def find_reference(db: Database, ref: str, record_id: Any) -> tuple[str, Row] | None:
    """The table and row a reference of definition ``ref`` points to, if it exists."""
    if not isinstance(record_id, str):
        return None
    for table in REFERENCE_TARGETS.get(ref, ()):
        row = db.get(table, record_id)
        if row is not None:
            return table, row
    return None


def _json(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


class _Binder:
    """Collects errors while converting one body."""

    def __init__(self, db: Database, param: str, trusted: bool) -> None:
        self.db = db
        self.param = param
        self.trusted = trusted
        self.errors: dict[str, list[str]] = {}

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def model(self, model: Definition, body: dict[str, Any], path: str, *, top: bool) -> dict[str, Any]:
        result: dict[str, Any] = {}
        computed = COMPUTED.get(model.name, frozenset())
        for name, spec in model.fields.items():
            if top and name in READ_ONLY_FIELDS:
                continue
            if name in computed and not (self.trusted and name in TRUSTED_WRITABLE):
                continue
            if name == "id" and not top:
                value = body.get("id")
                result["id"] = self.scalar(value, "uuid", None, f"{path}.id") if value is not None else None
                continue
            field_path = f"{path}.{name}"
            value = self.value(body.get(name), spec, field_path)
            if spec.required and name != "id" and _blank(value):
                self.error(field_path, f"The {name} field is required.")
            if name in CUSTOM_VALUE_FIELDS and isinstance(value, list):
                self.custom_values(CUSTOM_VALUE_SCOPES.get(model.name), value, field_path)
            result[name] = value
        return result

    def custom_values(self, scope: str | None, entries: list[Any], path: str) -> None:
        """Check bound ``CustomFieldValue`` entries against the definitions they name."""
        for index, entry in enumerate(entries):
            ref = entry.get("custom_field_ref") if isinstance(entry, dict) else None
            field = self.db.get("custom_fields", ref.get("id")) if isinstance(ref, dict) else None
            if field is None or not isinstance(entry, dict):
                continue  # a missing or unknown reference is already reported
            self.custom_value(scope, field, entry, f"{path}[{index}]")

    def custom_value(self, scope: str | None, field: Row, entry: dict[str, Any], path: str) -> None:
        label, value_type = field.data.get("label"), str(field.data.get("value_type") or "TextBox")
        if scope is not None and field.extra.get("scope") != scope:
            self.error(
                f"{path}.custom_field_ref.id",
                f"The custom field '{label}' ({field.id}) is not a {scope} custom field.",
            )
            return
        slot = CUSTOM_FIELD_SLOTS.get(value_type, "value_string")
        for other in CUSTOM_VALUE_SLOTS:
            if other != slot and entry.get(other) is not None:
                self.error(
                    f"{path}.{other}",
                    f"The custom field '{label}' is a {value_type} field: its value goes in {slot}.",
                )
        chosen = entry.get(slot)
        options = _options(field.data.get("dropdown_list_values"))
        if value_type == "DropDownList" and options and chosen is not None and chosen not in options:
            self.error(
                f"{path}.{slot}",
                f"'{chosen}' is not an option of the custom field '{label}'; "
                f"allowed values are {', '.join(options)}.",
            )

    def value(self, value: Any, spec: FieldSpec, path: str) -> Any:
        if value is None:
            return None
        if spec.kind == "object":
            return self.object(value, spec.ref or "", path)
        if spec.kind == "array":
            if not isinstance(value, list):
                self.error(path, f"Cannot deserialize {_json(value)} into a collection.")
                return None
            return [self.item(item, spec, f"{path}[{i}]") for i, item in enumerate(value)]
        return self.scalar(value, spec.kind, spec.enum, path)

    def item(self, value: Any, spec: FieldSpec, path: str) -> Any:
        if value is None:
            return None
        if spec.item_ref:
            return self.object(value, spec.item_ref, path)
        return self.scalar(value, spec.item_kind or "string", None, path)

    def object(self, value: Any, ref: str, path: str) -> Any:
        if not isinstance(value, dict):
            self.error(path, f"Error converting value {_json(value)} to type '{ref}'.")
            return None
        if ref in REFERENCE_TARGETS:
            record_id = value.get("id")
            if record_id is None:
                self.error(f"{path}.id", "The id field is required.")
                return None
            normalized = self.scalar(record_id, "uuid", None, f"{path}.id")
            if normalized is None:
                return None
            if find_reference(self.db, ref, normalized) is None:
                kind = ref.removesuffix("Reference").removesuffix("Ref")
                self.error(f"{path}.id", f"The referenced {kind} '{normalized}' does not exist.")
                return None
            return {"id": normalized}
        nested = definition(ref)
        return self.model(nested, value, path, top=False)

    def scalar(self, value: Any, kind: str, enum: tuple[str, ...] | None, path: str) -> Any:
        converted = _convert(value, kind)
        if converted is _INVALID:
            self.error(
                path, f"Error converting value {_json(value)} to type '{_TYPE_NAMES.get(kind, kind)}'."
            )
            return None
        if enum and converted is not None:
            match = next((e for e in enum if e.lower() == str(converted).lower()), None)
            if match is None:
                allowed = ", ".join(enum)
                self.error(path, f"Error converting value {_json(value)}: allowed values are {allowed}.")
                return None
            return match
        return converted


_INVALID = object()


def _options(raw: Any) -> tuple[str, ...]:
    """A dropdown's options from ``dropdown_list_values`` (comma separated); none: any value."""
    return tuple(part.strip() for part in str(raw or "").split(",") if part.strip())


def _blank(value: Any) -> bool:
    return value is None or value == ""


def _convert(value: Any, kind: str) -> Any:
    """Json.NET's conversions: lenient between scalars, never from objects or arrays."""
    if isinstance(value, dict | list):
        return _INVALID
    try:
        if kind == "string":
            if isinstance(value, bool):
                return "true" if value else "false"
            return value if isinstance(value, str) else str(value)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if isinstance(value, int):
                return bool(value)
            return _INVALID
        if kind in ("integer", "number"):
            if isinstance(value, bool):
                return _INVALID
            number = float(value) if isinstance(value, str) else value
            if not isinstance(number, int | float) or math.isnan(number) or math.isinf(number):
                return _INVALID
            if kind == "integer":
                return int(number) if float(number).is_integer() else _INVALID
            return float(number)
        if kind == "uuid":
            return str(uuid.UUID(str(value))) if isinstance(value, str) else _INVALID
        if kind == "datetime":
            return format_date_value(parse_timestamp(value)) if isinstance(value, str) else _INVALID
    except (ValueError, TypeError, OverflowError):
        return _INVALID
    return value


def bind(
    db: Database,
    resource: Resource,
    body: Any,
    *,
    param: str = "value",
    trusted: bool = False,
    model_name: str | None = None,
) -> dict[str, Any]:
    """The stored form of ``body`` for ``resource``; raises a 400 ``ApiError`` listing every problem."""
    if not isinstance(body, dict):
        raise invalid({param: [f"The {param} field is required and must be a JSON object."]})
    binder = _Binder(db, param, trusted)
    data = binder.model(definition(model_name or resource.definition), body, param, top=True)
    if binder.errors:
        raise invalid(binder.errors)
    return data
