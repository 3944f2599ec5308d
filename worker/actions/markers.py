"""Idempotent creates: the marker a created record carries so a retry can find it.

PracticePanther has no idempotency keys. A create that timed out, got a 5xx, or whose worker was
killed after sending it may or may not have made the record, and creating again would make a
second one. So every record ppw creates carries a marker in one of its free-text fields::

    [ppw:3f9c1a2b7d4e5f60]

the first 16 hex digits of sha256(event id, rule id, step id), the same on every retry, replay and
worker. It is appended (after a blank line) to the field chosen per resource from the catalogue:
``private_notes`` where the resource has it (time entries, expenses, flat fees: never printed on an
invoice), else ``notes`` (tasks, events, matters, accounts ...), ``note`` (notes), ``description``
(files, items) or ``body_text`` (emails).

Before writing again, when the ledger shows an earlier attempt that started but has no result
(or failed in a way that may have reached PracticePanther), the executor searches
``$filter=contains(<field>,'[ppw:<hash>]')`` and, if a record turns up, uses it instead of
creating another. A first attempt does not search: it cannot have created anything yet, so the
common path costs one request.
"""

from __future__ import annotations

from typing import Any

from worker.practicepanther import odata
from worker.practicepanther.resources import Resource

#: Fields tried in order; the first free-text (string, non-enum) field the resource has wins.
MARKER_FIELDS: tuple[str, ...] = ("private_notes", "notes", "note", "description", "body_text", "body")


def marker(key: str) -> str:
    return f"[ppw:{key}]"


def marker_field(resource: Resource) -> str | None:
    """Where ``resource``'s records carry the marker; None when it has no free-text field."""
    fields = resource.fields
    for name in MARKER_FIELDS:
        spec = fields.get(name)
        if spec is not None and spec.kind == "string" and not spec.enum and not spec.read_only:
            return name
    return None


def with_marker(data: dict[str, Any], field: str, mark: str) -> dict[str, Any]:
    """``data`` with ``mark`` appended to ``field`` (once, whatever the rule put there)."""
    current = data.get(field)
    text = "" if current is None else str(current)
    if mark in text:
        return data
    return {**data, field: f"{text}\n\n{mark}" if text.strip() else mark}


def lookup_filter(field: str, mark: str) -> str:
    """The ``$filter`` that finds a record carrying ``mark``."""
    return odata.contains(field, mark)
