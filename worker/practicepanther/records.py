"""Shaping PracticePanther records on their way in and out: timestamps, merges for updates, JSON.

PracticePanther's ``PUT`` replaces the whole record, so an update is "GET, merge the changes in,
PUT everything back"; :func:`merge` is that merge. Its timestamps come back mostly naive; the
client rewrites every ``date-time`` field the swagger declares into one unambiguous form
(``2026-04-04T00:00:00Z``), so rules, snapshots and filters never have to guess a time zone.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from worker.practicepanther import resources
from worker.practicepanther.odata import TIMESTAMP_CACHE, format_timestamp, parse_timestamp

__all__ = ["dumps", "merge", "normalize", "normalize_in_place", "writable"]


@dataclass(frozen=True)
class _Shape:
    """Where a definition keeps its datetimes and nested definitions."""

    datetimes: frozenset[str]
    nested: tuple[tuple[str, str], ...]


@cache
def _shape(definition: str) -> _Shape:
    try:
        fields = resources.definition(definition).fields
    except KeyError:
        return _Shape(frozenset(), ())
    datetimes = frozenset(
        n
        for n, f in fields.items()
        if f.kind == "datetime" or (f.kind == "array" and f.item_kind == "datetime")
    )
    nested = tuple(
        (n, ref)
        for n, f in fields.items()
        if (ref := f.ref if f.kind == "object" else f.item_ref) is not None
    )
    return _Shape(datetimes, nested)


def normalize(value: Any, definition: str) -> Any:
    """``value`` (a record or a list of them) with declared datetimes as ``...Z`` strings.

    Values that do not parse as timestamps are left as they are rather than failing a whole page.
    """
    if isinstance(value, list):
        return [normalize(item, definition) for item in value]
    if not isinstance(value, dict):
        return value
    shape = _shape(definition)
    out = dict(value)
    for name in shape.datetimes & out.keys():
        out[name] = _timestamp(out[name])
    for name, ref in shape.nested:
        if out.get(name) is not None:
            out[name] = normalize(out[name], ref)
    return out


def normalize_in_place(value: Any, definition: str) -> Any:
    """:func:`normalize` for freshly decoded JSON that nobody else holds: converted in place.

    The result equals ``normalize(value, definition)``, but nothing is copied and nested objects
    that cannot hold a declared datetime (references, mostly) are not visited. A list page is
    normalised record by record on every poll, most of them re-reads, so this is per-record work.
    """
    if isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = normalize_in_place(item, definition)
        return value
    if not isinstance(value, dict):
        return value
    for name in _shape(definition).datetimes & value.keys():
        value[name] = _timestamp(value[name])
    for name, ref in _dated_nested(definition):
        if value.get(name) is not None:
            value[name] = normalize_in_place(value[name], ref)
    return value


@cache
def _dated_nested(definition: str) -> tuple[tuple[str, str], ...]:
    """The definition's nested fields that can hold a declared datetime (in the same order)."""
    return tuple((name, ref) for name, ref in _shape(definition).nested if _holds_datetimes(ref))


@cache
def _holds_datetimes(definition: str) -> bool:
    """Whether a definition declares a datetime, itself or in a definition nested in it."""
    pending, seen = [definition], {definition}
    while pending:
        shape = _shape(pending.pop())
        if shape.datetimes:
            return True
        for _, ref in shape.nested:
            if ref not in seen:
                seen.add(ref)
                pending.append(ref)
    return False


def _timestamp(value: Any) -> Any:
    if isinstance(value, list):
        return [_timestamp(v) for v in value]
    if not isinstance(value, str):
        return value
    return _timestamp_text(value)


@lru_cache(maxsize=TIMESTAMP_CACHE)
def _timestamp_text(value: str) -> str:
    """One timestamp string in the ``...Z`` form (or as it was), converted once per string.

    Polls re-read the records of the last minutes every time, so most strings were seen before.
    """
    try:
        parsed = parse_timestamp(value)
    except ValueError:
        return value
    return format_timestamp(parsed) if parsed is not None else value


def merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``changes`` applied; fields not mentioned in ``changes`` are kept.

    Nested objects merge key by key, except references (objects with an ``id``, such as
    ``matter_ref``): a new reference replaces the old one whole, so a stale ``display_name`` of the
    previous matter is not carried along. Lists are replaced, not appended to. ``None`` clears.
    """
    merged = copy.deepcopy(current)
    for name, value in changes.items():
        old = merged.get(name)
        if isinstance(old, dict) and isinstance(value, dict) and "id" not in value:
            merged[name] = merge(old, value)
        else:
            merged[name] = copy.deepcopy(value)
    return merged


def writable(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without the fields PracticePanther owns (``id``, ``created_at``, ``updated_at``)."""
    return {k: v for k, v in record.items() if k not in resources.READ_ONLY_FIELDS}


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):  # PracticePanther's dates are datetimes: midnight UTC
        return format_timestamp(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} to PracticePanther")


def dumps(body: Any) -> bytes:
    """JSON for a request body; datetimes go out as UTC with ``Z``."""
    return json.dumps(body, default=_default, ensure_ascii=False).encode()
