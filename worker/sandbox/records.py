"""The account's records and what writing them does: the server side of create, replace, delete.

The API handlers, ``/_sandbox/mutate``, the seed and the churn thread all write through
:class:`Records`, so the server-owned parts behave the same whoever writes: ids and timestamps,
numbering, defaults (a task is never without a status), computed amounts, an account's contacts,
the tag lists, and what a delete takes with it (records whose *required* reference pointed at the
deleted one; optional references simply render as ``null`` afterwards).
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from worker.practicepanther import resources
from worker.sandbox.clock import Clock
from worker.sandbox.errors import invalid, not_found
from worker.sandbox.rendering import Renderer
from worker.sandbox.store import Database, Row
from worker.sandbox.validation import REFERENCE_TARGETS, bind

API_USER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://ppw.invalid/sandbox/api-user"))

# Which tag list (``/tags/<scope>``) a resource's ``tags`` feed.
TAG_SCOPES = {
    "accounts": "account",
    "matters": "matter",
    "tasks": "activity",
    "events": "activity",
    "notes": "activity",
    "call_logs": "activity",
    "emails": "activity",
}
CUSTOM_FIELD_SCOPES = ("company", "matter", "contact")
_BODY_PARAMS = {"messages": "message"}


def _ref_id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else None


class Records:
    """Writes and reads of one sandbox account."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.renderer = Renderer(db)
        # Where new ids come from; the seed swaps in its own generator so seeded ids repeat.
        self.new_id: Callable[[], str] = lambda: str(uuid.uuid4())

    # -- reads --------------------------------------------------------------------------
    def row(self, resource: str, record_id: str) -> Row:
        row = self.db.get(resource, record_id)
        if row is None:
            raise not_found()
        return row

    def render(self, resource: str, row: Row, *, detail: bool = False) -> dict[str, Any]:
        """The record as the API answers it (shared, cached: never mutate the result)."""
        with self.db.lock:
            return self.renderer.render(resource, row, detail=detail)

    def get(self, resource: str, record_id: str, *, detail: bool = True) -> dict[str, Any]:
        with self.db.lock:
            return self.render(resource, self.row(resource, record_id), detail=detail)

    # -- writes -------------------------------------------------------------------------
    def create(
        self,
        resource: str,
        body: Any,
        *,
        at: datetime | None = None,
        trusted: bool = False,
        record_id: str | None = None,
        created_by: str = API_USER_ID,
    ) -> Row:
        """Validate ``body`` and store a new record; ``at`` backdates it (seed, late commits)."""
        res = resources.get(resource)
        with self.db.lock:
            data = bind(self.db, res, body, param=_BODY_PARAMS.get(resource, "value"), trusted=trusted)
            extra = self._extra_for_create(resource, body, data, created_by)
            self._defaults(resource, data, None, extra)
            nested = self._take_contacts(resource, data)
            moment = at or self.clock.now()
            row = self.db.insert(resource, record_id or self.new_id(), data, moment, extra)
            self._after_write(resource, row, nested, moment)
            return row

    def replace(
        self, resource: str, record_id: str, body: Any, *, at: datetime | None = None, trusted: bool = False
    ) -> Row:
        """PUT semantics: the body is the whole record; omitted fields are cleared."""
        res = resources.get(resource)
        with self.db.lock:
            row = self.row(resource, record_id)
            data = bind(self.db, res, body, param=_BODY_PARAMS.get(resource, "value"), trusted=trusted)
            self._defaults(resource, data, row, row.extra)
            nested = self._take_contacts(resource, data)
            if trusted and isinstance(body, dict):
                self._reattach(resource, row, body)
            row.data = data
            moment = at or self.clock.now()
            self.db.touch(resource, row, moment)
            self._after_write(resource, row, nested, moment)
            return row

    def update(
        self, resource: str, record_id: str, partial: dict[str, Any], *, at: datetime | None = None
    ) -> Row:
        """A web-UI edit: merge ``partial`` into the current record, then replace it."""
        with self.db.lock:
            row = self.row(resource, record_id)
            current = dict(self.render(resource, row, detail=False))
            if resource == "contacts":
                current["account_ref"] = {"id": row.extra.get("account_id")}
            if resource == "custom_fields":
                current["scope"] = row.extra.get("scope")
            merged = {**current, **partial}
            return self.replace(resource, record_id, merged, at=at, trusted=True)

    def touch(self, resource: str, rows: list[Row], at: datetime) -> None:
        """Give ``rows`` the modification time ``at`` (a save that changed nothing visible)."""
        with self.db.lock:
            for row in rows:
                self.db.touch(resource, row, at)

    def delete(self, resource: str, record_id: str) -> dict[str, Any]:
        """Delete a record (and what cannot exist without it); returns the record as it was."""
        with self.db.lock:
            row = self.row(resource, record_id)
            before = dict(self.render(resource, row, detail=False))
            if resource == "users":
                # People are deactivated, never removed: their time entries stay billable history.
                row.data["is_active"] = False
                self.db.touch(resource, row, self.clock.now())
                return before
            self._delete_cascade(resource, row)
            return before

    # -- internals ----------------------------------------------------------------------
    def _extra_for_create(
        self, resource: str, body: Any, data: dict[str, Any], created_by: str
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {"created_by": created_by}
        body = body if isinstance(body, dict) else {}
        if resource == "custom_fields":
            scope = body.get("scope", "matter")
            if scope not in CUSTOM_FIELD_SCOPES:
                raise invalid({"value.scope": [f"scope must be one of {', '.join(CUSTOM_FIELD_SCOPES)}."]})
            extra["scope"] = scope
        if resource == "contacts":
            account = self.db.get("accounts", _ref_id(body.get("account_ref")))
            if account is None:
                raise invalid({"value.account_ref": ["A contact is created on an existing account."]})
            extra["account_id"] = account.id
            extra["is_primary"] = not any(
                c.extra.get("is_primary") for c in self.renderer.contacts_of(account.id)
            )
        if resource == "files":
            content = body.get("_content")
            if isinstance(content, bytes):
                extra["content"] = content
                extra["content_type"] = body.get("_content_type")
        return extra

    def _reattach(self, resource: str, row: Row, body: dict[str, Any]) -> None:
        """Web-UI moves the API cannot make: a contact to another account, a custom field's scope."""
        if resource == "contacts":
            account = self.db.get("accounts", _ref_id(body.get("account_ref")))
            if account is not None:
                row.extra["account_id"] = account.id
        if resource == "custom_fields" and body.get("scope") in CUSTOM_FIELD_SCOPES:
            row.extra["scope"] = body["scope"]

    def _defaults(
        self, resource: str, data: dict[str, Any], existing: Row | None, extra: dict[str, Any]
    ) -> None:
        if resource == "tasks" and not data.get("status"):
            data["status"] = "NotCompleted"
        if resource in ("matters", "accounts", "payments") and data.get("number") is None:
            previous = existing.data.get("number") if existing else None
            data["number"] = previous if previous is not None else self.db.next_number(resource)
        if resource == "expenses":
            qty, price = data.get("qty"), data.get("price")
            data["amount"] = round(qty * price, 2) if qty is not None and price is not None else None
        if resource == "invoices":
            total, paid = data.get("total") or 0.0, data.get("total_paid") or 0.0
            data["total_outstanding"] = round(total - paid, 2)
        if resource == "users" and data.get("is_active") is None:
            data["is_active"] = True
        if resource == "payments" and data.get("refundedAmount") is None:
            data["refundedAmount"] = existing.data.get("refundedAmount", 0.0) if existing else 0.0
        if resource == "files":
            content = extra.get("content")
            if isinstance(content, bytes):
                data["size"] = len(content)
                data["content_type"] = extra.get("content_type") or "application/octet-stream"
            elif existing is not None:
                data["size"] = existing.data.get("size")
                data["content_type"] = existing.data.get("content_type")
            else:
                guessed = mimetypes.guess_type(str(data.get("file_name") or ""))[0]
                data["size"] = data.get("size") or 0
                data["content_type"] = data.get("content_type") or guessed or "application/octet-stream"
        if resource == "contacts" and not data.get("status"):
            data["status"] = existing.data.get("status") if existing else "Active"

    @staticmethod
    def _take_contacts(resource: str, data: dict[str, Any]) -> list[tuple[dict[str, Any], bool]] | None:
        """An account's contacts live in the contacts table; pull them out of the account body."""
        if resource != "accounts":
            return None
        primary = data.pop("primary_contact", None)
        others = data.pop("other_contacts", None) or []
        nested = [(primary, True)] if primary else []
        return nested + [(c, False) for c in others if c]

    def _after_write(
        self, resource: str, row: Row, contacts: list[tuple[dict[str, Any], bool]] | None, at: datetime
    ) -> None:
        if contacts is not None:
            self._sync_contacts(row, contacts, at)
        scope = TAG_SCOPES.get(resource)
        if scope:
            self._register_tags(scope, row.data.get("tags") or [], at)

    def _sync_contacts(self, account: Row, contacts: list[tuple[dict[str, Any], bool]], at: datetime) -> None:
        """Upsert the account's contacts from its body; contacts it no longer lists are removed."""
        keep: set[str] = set()
        current = {c.id: c for c in self.renderer.contacts_of(account.id)}
        for fields, is_primary in contacts:
            contact_id = fields.pop("id", None)
            data = {k: v for k, v in fields.items() if k not in ("account_ref", "is_primary_contact")}
            data.setdefault("status", "Active")
            existing = current.get(contact_id or "")
            if existing is not None:
                if existing.data != data or bool(existing.extra.get("is_primary")) != is_primary:
                    existing.data = data
                    existing.extra["is_primary"] = is_primary
                    self.db.touch("contacts", existing, at)
                keep.add(existing.id)
            else:
                extra = {"account_id": account.id, "is_primary": is_primary}
                new = self.db.insert("contacts", self.new_id(), data, at, extra)
                keep.add(new.id)
        for contact_id, contact in current.items():
            if contact_id not in keep:
                self._delete_cascade("contacts", contact)

    def _register_tags(self, scope: str, names: list[Any], at: datetime) -> None:
        known = {row.data.get("name") for row in self.db.iter_rows("tags") if row.extra.get("scope") == scope}
        for name in names:
            if isinstance(name, str) and name and name not in known:
                self.db.insert("tags", self.new_id(), {"name": name}, at, {"scope": scope})
                known.add(name)

    def _delete_cascade(self, resource: str, row: Row) -> None:
        if self.db.delete(resource, row.id) is None:
            return
        if resource == "accounts":
            for contact in self.renderer.contacts_of(row.id):
                self._delete_cascade("contacts", contact)
        for other_name, other in resources.catalogue().items():
            dependent_fields = [
                name
                for name, spec in other.fields.items()
                if spec.required
                and spec.kind == "object"
                and resource in REFERENCE_TARGETS.get(spec.ref or "", ())
            ]
            if not dependent_fields:
                continue
            for dependent in self.db.rows(other_name):
                if any(_ref_id(dependent.data.get(f)) == row.id for f in dependent_fields):
                    self._delete_cascade(other_name, dependent)

    def backdated(self, seconds: float | None) -> datetime | None:
        """The moment ``seconds`` before now, for a write that commits late (``None``: now)."""
        if not seconds:
            return None
        return self.clock.now() - timedelta(seconds=float(seconds))
