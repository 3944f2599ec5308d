"""Custom fields: the account's definitions, and the values records carry, read and written by label.

Matters and contacts carry ``custom_field_values``, accounts ``company_custom_field_values``: lists
of ``CustomFieldValue`` entries, each naming its field by ``custom_field_ref`` (an id, plus the
label and ``value_type`` when PracticePanther renders it) and holding its value in the one slot
its type uses (``value_string``, ``value_number``, ``value_date_time``, ``value_boolean``,
``contact_ref``). Firms keep case stage, statute-of-limitations dates and referral sources there,
so ppw treats each one as a field named by its label:

* :func:`expand_changes` turns an old/new record pair into ``{"custom.<label>": (old, new)}`` for
  every custom field whose value changed. Values stay the raw slot value (JSON, as stored in
  events); typing happens where rules read them (:func:`read`).
* :func:`read` types a raw value by ``value_type``: text, a number, an aware UTC datetime (the
  service sends naive UTC), a bool, or the contact reference.
* :func:`encode` turns a value a rule gives into the entry PracticePanther takes, refusing what
  the field cannot hold (a dropdown value that is not an option, a number that is not one) with a
  :class:`CustomFieldError` naming the label and what was expected; :func:`merge_entries` puts
  named entries into a record's list by field id, keeping every other entry.
* :class:`Definitions` are the account's ``CustomField`` definitions per scope (``matter``,
  ``contact``, ``company``), fetched from ``/customfields/<scope>`` (:func:`fetch`), kept in the
  state store per connection with their fetched-at time (:class:`DefinitionCache`) and written to
  or read from a JSON file (:meth:`Definitions.dump`, :meth:`Definitions.load`), so
  ``ppw rules check --custom-fields FILE`` can check labels without credentials.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.errors import PpwError
from worker.hints import did_you_mean, one_of
from worker.practicepanther.odata import format_timestamp, parse_timestamp
from worker.state import open_store, sqlite_path
from worker.state.base import StateStore, key

if TYPE_CHECKING:
    from worker.practicepanther.client import PracticePantherClient

#: What rule names put before a label: ``changed: custom.Case Stage``, ``changes['custom.X']``.
PREFIX = "custom."

#: The definitions scope of each resource that carries custom fields.
SCOPES: dict[str, str] = {"matters": "matter", "contacts": "contact", "accounts": "company"}

#: The record field holding the list of values, per resource.
VALUES_FIELDS: dict[str, str] = {
    "matters": "custom_field_values",
    "contacts": "custom_field_values",
    "accounts": "company_custom_field_values",
}

#: The slot of a ``CustomFieldValue`` each value type uses.
SLOTS: dict[str, str] = {
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
ALL_SLOTS = ("value_string", "value_number", "value_date_time", "value_boolean", "contact_ref")

#: What a value of each type is, for error messages.
EXPECTED: dict[str, str] = {
    "TextBox": "text",
    "TextEditor": "text",
    "DropDownList": "one of its options",
    "Number": "a number",
    "Currency": "a number (an amount)",
    "Date": "a date (ISO 8601, e.g. 2026-05-01)",
    "DateTime": "a date and time (ISO 8601, e.g. 2026-05-01T09:00:00Z)",
    "Checkbox": "true or false",
    "Contact": "a contact reference ({id: ...}) or a contact id",
}

FILE_VERSION = 1

__all__ = [
    "ALL_SLOTS",
    "EXPECTED",
    "PREFIX",
    "SCOPES",
    "SLOTS",
    "VALUES_FIELDS",
    "CustomField",
    "CustomFieldError",
    "DefinitionCache",
    "Definitions",
    "cached",
    "custom_label",
    "custom_name",
    "encode",
    "entries",
    "expand_changes",
    "fetch",
    "merge_entries",
    "raw_value",
    "read",
    "refresh",
    "typed_values",
    "values_by_label",
]


class CustomFieldError(PpwError, ValueError):
    """A custom field a rule names that does not exist, or a value it cannot hold.

    Permanent: the same label or value fails the same way on every retry. ``hint`` says what
    would be accepted (a near label, the dropdown's options).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(f"{message} ({hint})" if hint else message)
        self.message = message
        self.hint = hint


# -- names ---------------------------------------------------------------------------------------


def custom_name(label: str) -> str:
    """``custom.<label>``: how changes and triggers name a custom field."""
    return PREFIX + label


def custom_label(name: str) -> str | None:
    """The label of ``custom.<label>``, or None for an ordinary field name."""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else None


# -- definitions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomField:
    """One ``CustomField`` definition: its id, label, value type and (dropdowns) options."""

    id: str
    label: str
    value_type: str
    options: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CustomField:
        """A definition as ``/customfields/<scope>`` lists it (options are comma separated)."""
        raw = data.get("dropdown_list_values") or ""
        options = data.get("options")
        if isinstance(options, list):
            parsed = tuple(str(o) for o in options)
        else:
            parsed = tuple(part.strip() for part in str(raw).split(",") if part.strip())
        return cls(
            id=str(data.get("id") or ""),
            label=str(data.get("label") or ""),
            value_type=str(data.get("value_type") or "TextBox"),
            options=parsed,
        )

    @property
    def slot(self) -> str:
        """The ``CustomFieldValue`` slot this field's value lives in."""
        return SLOTS.get(self.value_type, "value_string")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "label": self.label, "value_type": self.value_type}
        if self.options:
            data["options"] = list(self.options)
        return data


@dataclass(frozen=True)
class Definitions:
    """The account's custom field definitions, per scope, with when each scope was fetched.

    A scope absent from ``scopes`` is unknown (never fetched): checks skip it rather than call
    every label in it unknown.
    """

    scopes: Mapping[str, tuple[CustomField, ...]] = field(default_factory=dict)
    fetched_at: Mapping[str, str] = field(default_factory=dict)

    def known(self, resource: str) -> bool:
        """Whether the definitions of ``resource``'s scope are here."""
        scope = SCOPES.get(resource)
        return scope is not None and scope in self.scopes

    def fields(self, resource: str) -> tuple[CustomField, ...]:
        """The definitions of ``resource`` (empty when its scope is unknown or has none)."""
        scope = SCOPES.get(resource)
        return self.scopes.get(scope, ()) if scope else ()

    def labels(self, resource: str) -> list[str]:
        return [f.label for f in self.fields(resource)]

    def by_label(self, resource: str, label: str) -> CustomField | None:
        return next((f for f in self.fields(resource) if f.label == label), None)

    def by_id(self, resource: str, field_id: str) -> CustomField | None:
        wanted = field_id.lower()
        return next((f for f in self.fields(resource) if f.id.lower() == wanted), None)

    def find(self, resource: str, label: str) -> CustomField:
        """The definition labelled ``label``, else a :class:`CustomFieldError` with a near label."""
        found = self.by_label(resource, label)
        if found is not None:
            return found
        if resource not in SCOPES:
            raise CustomFieldError(
                f"{resource} have no custom fields", f"custom fields exist on {', '.join(SCOPES)}"
            )
        labels = self.labels(resource)
        raise CustomFieldError(
            f"no custom field {label!r} on {resource}",
            did_you_mean(label, labels) or f"expected {one_of(labels)}",
        )

    def with_scope(self, scope: str, fields: Sequence[CustomField], fetched_at: str) -> Definitions:
        return Definitions({**self.scopes, scope: tuple(fields)}, {**self.fetched_at, scope: fetched_at})

    # -- the export file ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "version": FILE_VERSION,
            "scopes": {
                scope: {
                    "fetched_at": self.fetched_at.get(scope),
                    "fields": [f.to_json() for f in fields],
                }
                for scope, fields in sorted(self.scopes.items())
            },
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str = "custom fields") -> Definitions:
        """Definitions from :meth:`to_json`'s shape; a wrong shape is an error naming ``source``."""
        scopes = data.get("scopes") if isinstance(data, dict) else None
        if not isinstance(scopes, dict):
            raise CustomFieldError(
                f"{source}: expected an object with 'scopes'",
                "write it with `ppw customfields export FILE`",
            )
        result = cls()
        for scope, entry in scopes.items():
            if scope not in SCOPES.values():
                raise CustomFieldError(
                    f"{source}: unknown scope {scope!r}", f"expected {one_of(SCOPES.values())}"
                )
            items = entry.get("fields") if isinstance(entry, dict) else None
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise CustomFieldError(f"{source}: scopes.{scope}.fields must be a list of objects")
            fields = [CustomField.from_api(item) for item in items]
            result = result.with_scope(scope, fields, str(entry.get("fetched_at") or ""))
        return result

    def dump(self, path: Path) -> None:
        """Write the export file (sorted, so a committed file changes only when definitions do)."""
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Definitions:
        """Read an export file; a missing or unreadable one is a :class:`CustomFieldError`."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CustomFieldError(
                f"{path}: no such file", "write it with `ppw customfields export FILE`"
            ) from None
        except json.JSONDecodeError as exc:
            raise CustomFieldError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
        return cls.from_json(data, source=str(path))


def fetch(client: PracticePantherClient, scopes: Iterable[str] = tuple(SCOPES.values())) -> Definitions:
    """The account's definitions, read from ``/customfields/<scope>`` for each scope."""
    definitions = Definitions()
    for scope in scopes:
        moment = format_timestamp(datetime.now(UTC))
        listed = [CustomField.from_api(item) for item in client.list("custom_fields", variant=scope)]
        definitions = definitions.with_scope(scope, listed, moment)
    return definitions


class DefinitionCache:
    """Definitions kept in the state store, one hash field per scope (with its fetched-at time).

    Parameters
    ----------
    store:
        The state store of the deployment.
    connection:
        The PracticePanther connection whose account the definitions are of.
    """

    def __init__(self, store: StateStore, connection: str) -> None:
        self.store = store
        self.key = key(connection, "customfields")

    def load(self) -> Definitions:
        """What is cached (no scope at all when nothing was ever refreshed)."""
        definitions = Definitions()
        for scope, raw in sorted(self.store.hgetall(self.key).items()):
            try:
                entry = json.loads(raw)
                fields = [CustomField.from_api(item) for item in entry["fields"]]
            except (ValueError, KeyError, TypeError):
                continue  # a damaged entry reads as never fetched; the next refresh rewrites it
            definitions = definitions.with_scope(scope, fields, str(entry.get("fetched_at") or ""))
        return definitions

    def save(self, definitions: Definitions) -> None:
        mapping = {
            scope: json.dumps(
                {
                    "fetched_at": definitions.fetched_at.get(scope),
                    "fields": [f.to_json() for f in fields],
                }
            )
            for scope, fields in definitions.scopes.items()
        }
        if mapping:
            self.store.hset(self.key, mapping)


def cached(state_url: str, connection: str) -> Definitions | None:
    """The definitions cached in the state store at ``state_url``, or None when there are none or
    the store cannot be read (``ppw rules check`` then checks without them). An embedded store
    that does not exist yet is not created."""
    if state_url.startswith("sqlite:") and not Path(sqlite_path(state_url)).exists():
        return None
    try:
        store = open_store(state_url)
    except (ValueError, OSError, PpwError):
        return None
    try:
        definitions = DefinitionCache(store, connection).load()
    except (OSError, PpwError):
        return None
    finally:
        store.close()
    return definitions if definitions.scopes else None


def refresh(client: PracticePantherClient, store: StateStore, connection: str) -> Definitions:
    """Fetch the definitions from PracticePanther and cache them; returns what was fetched."""
    definitions = fetch(client)
    DefinitionCache(store, connection).save(definitions)
    return definitions


# -- values ----------------------------------------------------------------------------------------


def entries(resource: str, record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The ``CustomFieldValue`` entries of ``record`` (none for a resource without custom fields)."""
    name = VALUES_FIELDS.get(resource)
    if name is None or record is None:
        return []
    found = record.get(name)
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _ref(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = entry.get("custom_field_ref")
    return ref if isinstance(ref, Mapping) else {}


def _entry_id(entry: Mapping[str, Any]) -> str:
    return str(_ref(entry).get("id") or "").lower()


def raw_value(entry: Mapping[str, Any], value_type: str | None = None) -> Any:
    """The value of one entry as stored: its type's slot, or the first filled slot when the type
    is not known."""
    value_type = value_type or _ref(entry).get("value_type")
    if isinstance(value_type, str) and value_type in SLOTS:
        return entry.get(SLOTS[value_type])
    return next((entry[s] for s in ALL_SLOTS if entry.get(s) is not None), None)


@dataclass(frozen=True)
class _Value:
    label: str
    value_type: str | None
    raw: Any


def _values_by_id(
    resource: str, record: Mapping[str, Any] | None, definitions: Definitions | None
) -> dict[str, _Value]:
    values: dict[str, _Value] = {}
    for entry in entries(resource, record):
        field_id = _entry_id(entry)
        known = definitions.by_id(resource, field_id) if definitions is not None and field_id else None
        ref = _ref(entry)
        label = known.label if known is not None else str(ref.get("label") or field_id)
        value_type = known.value_type if known is not None else ref.get("value_type")
        values[field_id or label] = _Value(label, value_type, raw_value(entry, value_type))
    return values


def values_by_label(
    resource: str, record: Mapping[str, Any] | None, definitions: Definitions | None = None
) -> dict[str, tuple[str | None, Any]]:
    """``{label: (value_type, raw value)}`` of ``record``; labels from the definitions when given
    (they are current), else from the entries' refs."""
    return {v.label: (v.value_type, v.raw) for v in _values_by_id(resource, record, definitions).values()}


def typed_values(
    resource: str, record: Mapping[str, Any] | None, definitions: Definitions | None = None
) -> dict[str, Any]:
    """``{label: typed value}`` of ``record`` (see :func:`read`)."""
    return {
        label: read(value_type, raw)
        for label, (value_type, raw) in values_by_label(resource, record, definitions).items()
    }


def expand_changes(
    resource: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    definitions: Definitions | None = None,
) -> dict[str, tuple[Any, Any]]:
    """``{"custom.<label>": (old raw value, new raw value)}`` for every custom field whose value
    differs between ``old`` and ``new``. Pure.

    Entries are matched by field id, so a label renamed between the two versions is one field
    (named by its newer label). A field present on one side only changed from or to ``None``;
    an entry whose value is ``None`` on both sides did not change. Resources without custom
    fields give ``{}``.
    """
    if resource not in VALUES_FIELDS:
        return {}
    before = _values_by_id(resource, old, definitions)
    after = _values_by_id(resource, new, definitions)
    changes: dict[str, tuple[Any, Any]] = {}
    for field_id in [*after, *(i for i in before if i not in after)]:
        was, now = before.get(field_id), after.get(field_id)
        old_raw = was.raw if was is not None else None
        new_raw = now.raw if now is not None else None
        if old_raw != new_raw:
            label = (now or was).label  # type: ignore[union-attr]  # one of the two is there
            changes[custom_name(label)] = (old_raw, new_raw)
    return changes


def read(value_type: str | None, raw: Any) -> Any:
    """A raw slot value typed by ``value_type``: text; number; aware UTC datetime; bool; the
    contact reference. A value that does not parse is returned as it came (never an error: one
    odd record must not break a rule's templates)."""
    if raw is None:
        return None
    if value_type in ("Number", "Currency"):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float):
            return raw
        try:
            return float(str(raw))
        except ValueError:
            return raw
    if value_type in ("Date", "DateTime"):
        if isinstance(raw, datetime):
            return raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
        try:
            return parse_timestamp(str(raw))
        except ValueError:
            return raw
    if value_type == "Checkbox":
        return _boolean(raw) if not isinstance(raw, bool) else raw
    if value_type in ("TextBox", "TextEditor", "DropDownList"):
        return raw if isinstance(raw, str) else str(raw)
    return raw


_TRUE = {"true", "yes", "on", "1", "checked"}
_FALSE = {"false", "no", "off", "0", "unchecked", ""}


def _boolean(raw: Any) -> Any:
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return raw


# -- writing ---------------------------------------------------------------------------------------


def encode(field: CustomField, value: Any) -> dict[str, Any]:
    """The ``CustomFieldValue`` entry that sets ``field`` to ``value`` (``None`` clears it).

    Raises
    ------
    CustomFieldError
        ``value`` is not something ``field`` can hold; the message names the label and type, the
        hint what was expected.
    """
    entry: dict[str, Any] = {"custom_field_ref": {"id": field.id}}
    entry[field.slot] = None if value is None else _encoded(field, value)
    return entry


def _refuse(field: CustomField, value: Any, hint: str | None = None) -> CustomFieldError:
    return CustomFieldError(
        f"custom field {field.label!r} ({field.value_type}) cannot hold {value!r}",
        hint or f"expected {EXPECTED.get(field.value_type, 'a value of its type')}",
    )


def _encoded(field: CustomField, value: Any) -> Any:
    kind = field.value_type
    if kind == "DropDownList":
        text = value if isinstance(value, str) else str(value)
        if field.options and text not in field.options:
            hint = did_you_mean(text, field.options) or f"expected {one_of(field.options)}"
            raise _refuse(field, value, hint)
        return text
    if kind in ("Number", "Currency"):
        if isinstance(value, bool):
            raise _refuse(field, value)
        if isinstance(value, int | float):
            return value
        try:
            number = float(str(value).strip().replace(",", ""))
        except ValueError:
            raise _refuse(field, value) from None
        return int(number) if number.is_integer() and "." not in str(value) else number
    if kind in ("Date", "DateTime"):
        return format_timestamp(_moment(field, value))
    if kind == "Checkbox":
        flag = value if isinstance(value, bool) else _boolean(value)
        if not isinstance(flag, bool):
            raise _refuse(field, value)
        return flag
    if kind == "Contact":
        if isinstance(value, Mapping) and value.get("id"):
            return {"id": str(value["id"])}
        if isinstance(value, str) and value.strip():
            return {"id": value.strip()}
        raise _refuse(field, value)
    if isinstance(value, Mapping | list):
        raise _refuse(field, value)
    return value if isinstance(value, str) else str(value)


def _moment(field: CustomField, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        moment = parse_timestamp(str(value))
    except ValueError:
        moment = None
    if moment is None:
        raise _refuse(field, value)
    return moment


def merge_entries(current: Sequence[Mapping[str, Any]], updates: Sequence[Mapping[str, Any]]) -> list[Any]:
    """``current`` with each of ``updates`` in place of the entry for the same field id (appended
    when the record has none yet); every other entry is kept as it was."""
    by_id = {_entry_id(u): dict(u) for u in updates}
    merged: list[Any] = []
    for entry in current:
        field_id = _entry_id(entry)
        merged.append(by_id.pop(field_id) if field_id in by_id else dict(entry))
    merged.extend(by_id.values())
    return merged
