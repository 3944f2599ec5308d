"""Rows -> the JSON the API answers with, in the swagger definition's shape and field order.

Everything derived is computed here, at read time, so it can never go stale: display names,
reference objects (``{"id", "display_name"}``, a UserReference's ``email_address``, a
ContactReference's ``account_ref``), the ``account_ref`` of anything attached to a matter (it
follows the matter), an account's contacts, timestamps. A reference whose record is gone renders
as ``null``.

Every field of the definition is present: ``null`` when empty, ``[]`` for an empty collection,
like the complete objects of the swagger's examples. Models without ``created_at``/``updated_at``
in the swagger (contacts, relationships, bank accounts, custom fields) never get them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from worker.practicepanther.resources import Definition, FieldSpec, definition, get
from worker.sandbox.clock import format_timestamp
from worker.sandbox.store import Database, Row
from worker.sandbox.validation import REFERENCE_TARGETS, find_reference

# Reference definitions rendered as the whole target record rather than id + display string.
_FULL_REFERENCES = frozenset({"ExpenseCategory", "BankAccount"})


def person_name(data: dict[str, Any]) -> str:
    """``First Last``, as the web UI shows a person."""
    parts = [data.get("first_name"), data.get("last_name")]
    return " ".join(str(p).strip() for p in parts if p and str(p).strip())


# What a table's display name or rendering reads besides its own rows (transitively closed below).
_READS_ALSO: dict[str, frozenset[str]] = {
    "matters": frozenset({"accounts"}),
    "accounts": frozenset({"contacts"}),
    "contacts": frozenset({"accounts"}),
}


@cache
def dependencies(resource: str) -> tuple[str, ...]:
    """Every table a rendering of ``resource`` reads, so caches know what can make it stale."""
    tables: set[str] = set()
    res = get(resource)
    pending = [res.definition, res.detail_definition]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in definition(name).fields.values():
            ref = spec.ref or spec.item_ref
            if not ref:
                continue
            tables.update(REFERENCE_TARGETS.get(ref, ()))
            pending.append(ref)
    if "matter_ref" in res.fields:
        tables.add("matters")
    if resource == "accounts":
        tables.add("contacts")
    grown = True
    while grown:
        extra = set().union(*(_READS_ALSO.get(t, frozenset()) for t in tables)) - tables
        grown = bool(extra)
        tables |= extra
    return tuple(sorted(tables))


class Renderer:
    """Renders rows; a cached rendering is reused until its row or a table it reads changes."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[tuple[str, str, bool], tuple[tuple[int, ...], dict[str, Any]]] = {}
        self._contacts_generation = -1
        self._contacts: dict[str, list[Row]] = {}

    # -- public -------------------------------------------------------------------------
    def render(self, resource: str, row: Row, *, detail: bool = False) -> dict[str, Any]:
        """The record as the API returns it (``detail`` uses the get-by-id definition)."""
        generations = self.db.generations
        stamp = (row.version, *(generations[t] for t in dependencies(resource)))
        key = (resource, row.id, detail)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        res = get(resource)
        model = definition(res.detail_definition if detail else res.definition)
        rendered = self._record(resource, model, row)
        self._cache[key] = (stamp, rendered)
        return rendered

    def contacts_of(self, account_id: str) -> list[Row]:
        """The contacts of an account, in insertion order."""
        if self._contacts_generation != self.db.generations["contacts"]:
            self._contacts = {}
            for row in self.db.iter_rows("contacts"):
                self._contacts.setdefault(row.extra.get("account_id", ""), []).append(row)
            self._contacts_generation = self.db.generations["contacts"]
        return list(self._contacts.get(account_id, []))

    def forget(self) -> None:
        """Drop every cached rendering (after a reset)."""
        self._cache.clear()

    def display_name(self, resource: str, row: Row) -> str:
        data = row.data
        if resource == "accounts":
            if data.get("company_name"):
                return str(data["company_name"])
            primary = next((c for c in self.contacts_of(row.id) if c.extra.get("is_primary")), None)
            if primary is not None and person_name(primary.data):
                return person_name(primary.data)
            return f"Account {data.get('number') or ''}".strip()
        if resource == "contacts":
            return person_name(data) or str(data.get("email") or "")
        if resource == "matters":
            account = self.db.get("accounts", (data.get("account_ref") or {}).get("id"))
            name = str(data.get("name") or "")
            return f"{self.display_name('accounts', account)} - {name}" if account else name
        if resource == "users":
            return str(data.get("display_name") or person_name(data) or data.get("email") or "")
        for key in ("name", "subject", "file_name", "label"):
            if data.get(key):
                return str(data[key])
        return ""

    def reference(self, ref: str, record_id: str | None) -> dict[str, Any] | None:
        """A reference object for ``record_id`` (``None`` when the record is gone)."""
        found = find_reference(self.db, ref, record_id)
        if found is None:
            return None
        table, row = found
        if ref in _FULL_REFERENCES:
            return self.render(table, row)
        data = row.data
        values: dict[str, Any] = {
            "id": row.id,
            "display_name": self.display_name(table, row),
            "email_address": data.get("email"),
            "name": data.get("name"),
            "subject": data.get("subject"),
            "label": data.get("label"),
            "value_type": data.get("value_type"),
            "file_name": data.get("file_name"),
        }
        if table == "contacts":
            values["account_ref"] = self.reference("AccountReference", row.extra.get("account_id"))
        return {name: values.get(name) for name in definition(ref).fields}

    # -- internals ----------------------------------------------------------------------
    def _record(self, resource: str, model: Definition, row: Row) -> dict[str, Any]:
        data = row.data
        out: dict[str, Any] = {}
        matter = self.db.get("matters", (data.get("matter_ref") or {}).get("id"))
        for name, spec in model.fields.items():
            if name == "id":
                out[name] = row.id
            elif name == "created_at":
                out[name] = format_timestamp(row.created)
            elif name == "updated_at":
                out[name] = format_timestamp(row.modified)
            elif name == "display_name" and resource in ("accounts", "matters", "contacts", "users"):
                out[name] = self.display_name(resource, row)
            elif name == "account_ref" and matter is not None and "matter_ref" in model.fields:
                out[name] = self.reference(
                    "AccountReference", (matter.data.get("account_ref") or {}).get("id")
                )
            else:
                out[name] = self._value(data.get(name), spec)
        if resource == "contacts":
            self._contact_extras(row, out)
        elif resource == "accounts":
            contacts = self.contacts_of(row.id)
            primary = next((c for c in contacts if c.extra.get("is_primary")), None)
            out["primary_contact"] = self.render("contacts", primary) if primary else None
            out["other_contacts"] = [self.render("contacts", c) for c in contacts if c is not primary]
        return out

    def _contact_extras(self, row: Row, out: dict[str, Any]) -> None:
        out["account_ref"] = self.reference("AccountReference", row.extra.get("account_id"))
        out["is_primary_contact"] = bool(row.extra.get("is_primary"))
        out["status"] = row.data.get("status") or "Active"

    def _value(self, value: Any, spec: FieldSpec) -> Any:
        if spec.kind == "array":
            return [self._item(item, spec) for item in value or []]
        if value is None:
            return None
        if spec.kind == "object" and spec.ref:
            return self._object(value, spec.ref)
        return value

    def _item(self, item: Any, spec: FieldSpec) -> Any:
        if spec.item_ref and item is not None:
            return self._object(item, spec.item_ref)
        return item

    def _object(self, value: dict[str, Any], ref: str) -> Any:
        if ref in REFERENCE_TARGETS:
            return self.reference(ref, value.get("id"))
        nested = definition(ref)
        return {name: self._value(value.get(name), spec) for name, spec in nested.fields.items()}
