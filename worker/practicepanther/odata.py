"""OData query pieces for PracticePanther list endpoints, and the timestamps they carry.

PracticePanther is an ASP.NET Web API OData v4 service. Two details bite hand-built filters:
string literals escape a quote by doubling it (``'O''Brien'``), and a datetime literal *must*
carry ``Z`` or an offset, otherwise the live API answers 400. :func:`literal` gets both right, and
the helpers below build filters from it so nobody concatenates user data into a query.

Responses mostly carry *naive* timestamps (``2026-04-04T00:00:00``) that PracticePanther documents
as UTC, some with milliseconds, a few with ``Z`` or an offset, and messages with seven fractional
digits; :func:`parse_timestamp` reads all of them as aware UTC datetimes.

>>> and_(eq("status", "Open"), gt("updated_at", datetime(2026, 4, 6, tzinfo=UTC)))
"(status eq 'Open') and (updated_at gt 2026-04-06T00:00:00Z)"
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from functools import lru_cache

__all__ = [
    "Filter",
    "and_",
    "contains",
    "endswith",
    "eq",
    "format_timestamp",
    "ge",
    "gt",
    "in_",
    "le",
    "literal",
    "lt",
    "ne",
    "not_",
    "or_",
    "orderby",
    "parse_timestamp",
    "startswith",
]

#: Distinct timestamp strings remembered by the parsers (about 200 bytes each). Polls re-read
#: every record changed within the overlap, so this many covers the overlap of a burst of
#: several thousand edited records; past that the cache only stops helping (it never grows).
TIMESTAMP_CACHE = 16_384

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_ORDER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_/]*)(\s+(asc|desc))?\s*$", re.IGNORECASE)


class Filter(str):
    """A ``$filter`` expression; combine with ``&``, ``|`` and ``~`` as well as the helpers."""

    __slots__ = ()

    def __and__(self, other: str) -> Filter:
        return and_(self, other)

    def __or__(self, other: str) -> Filter:
        return or_(self, other)

    def __invert__(self) -> Filter:
        return not_(self)


def format_timestamp(dt: datetime) -> str:
    """``2026-04-06T00:00:00Z`` (microseconds only when present): how we send every datetime.

    Aware values are converted to UTC; naive values are taken as UTC, which is what
    PracticePanther means by them.
    """
    dt = dt.astimezone(UTC) if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}"
    return text + "Z"


def parse_timestamp(value: str | None) -> datetime | None:
    """An aware UTC datetime from any timestamp PracticePanther sends; None for None or ``""``.

    Naive values are UTC (as PracticePanther documents); a bare date is midnight UTC; a seventh
    fractional digit is dropped (Python keeps microseconds). Raises ``ValueError`` on garbage.

    Strings are parsed once each (:data:`TIMESTAMP_CACHE`): every poll re-reads the records of
    the last minutes, so the same ``updated_at`` strings come back poll after poll.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return _parse_cached(value)
    return _parse(value)  # not a string: fails as it always did, uncached


@lru_cache(maxsize=TIMESTAMP_CACHE)
def _parse_cached(value: str) -> datetime | None:
    """:func:`_parse`, remembered (datetimes are immutable, so sharing them is safe)."""
    return _parse(value)


def _parse(value: str) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def literal(value: object) -> str:
    """The OData literal for ``value``: strings quoted with ``''`` escaping, datetimes with ``Z``.

    ``bool`` → ``true``/``false``, ``None`` → ``null``, numbers as written, ``UUID`` bare (a guid
    literal in OData v4), ``date`` → midnight UTC (PracticePanther's date fields are datetimes),
    enums by value. Anything else raises ``TypeError`` rather than guess.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return literal(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"OData has no literal for {value!r}")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"OData has no literal for {value!r}")
        return format(value, "f")
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return format_timestamp(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no OData literal for {type(value).__name__}")


def field(name: str) -> str:
    """A property path (``status``, ``matter_ref/id``), checked so it cannot smuggle in an expression."""
    if not _FIELD.match(name):
        raise ValueError(f"not an OData property path: {name!r}")
    return name


def _compare(op: str, name: str, value: object) -> Filter:
    return Filter(f"{field(name)} {op} {literal(value)}")


def eq(name: str, value: object) -> Filter:
    return _compare("eq", name, value)


def ne(name: str, value: object) -> Filter:
    return _compare("ne", name, value)


def gt(name: str, value: object) -> Filter:
    return _compare("gt", name, value)


def ge(name: str, value: object) -> Filter:
    return _compare("ge", name, value)


def lt(name: str, value: object) -> Filter:
    return _compare("lt", name, value)


def le(name: str, value: object) -> Filter:
    return _compare("le", name, value)


def _call(function: str, name: str, text: str) -> Filter:
    if not isinstance(text, str):
        raise TypeError(f"{function}() needs a string, got {type(text).__name__}")
    return Filter(f"{function}({field(name)}, {literal(text)})")


def contains(name: str, text: str) -> Filter:
    """``contains(name, 'text')`` (PracticePanther's help article uses it on ``user/name``)."""
    return _call("contains", name, text)


def startswith(name: str, text: str) -> Filter:
    return _call("startswith", name, text)


def endswith(name: str, text: str) -> Filter:
    return _call("endswith", name, text)


def _join(op: str, parts: tuple[str, ...]) -> Filter:
    kept = [p for p in parts if p]
    if not kept:
        raise ValueError(f"{op}_() needs at least one expression")
    if len(kept) == 1:
        return Filter(kept[0])
    return Filter(f" {op} ".join(f"({p})" for p in kept))


def and_(*filters: str) -> Filter:
    """Every expression holds; empty ones (``""``) are skipped so optional clauses compose."""
    return _join("and", filters)


def or_(*filters: str) -> Filter:
    """At least one expression holds; empty ones are skipped."""
    return _join("or", filters)


def not_(expression: str) -> Filter:
    if not expression:
        raise ValueError("not_() needs an expression")
    return Filter(f"not ({expression})")


def in_(name: str, values: list[object] | tuple[object, ...]) -> Filter:
    """``name`` equals one of ``values`` (spelled as ``or`` for services without OData 4.01 ``in``)."""
    if not values:
        raise ValueError("in_() needs at least one value")
    return or_(*(eq(name, v) for v in values))


def orderby(spec: str | list[str] | tuple[str, ...]) -> str:
    """A checked ``$orderby``: ``"updated_at"``, ``["updated_at desc", "id"]`` or ``"a, b desc"``."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        match = _ORDER.match(item)
        if not match:
            raise ValueError(f"not an OData $orderby item: {item!r}")
        direction = f" {match.group(3).lower()}" if match.group(3) else ""
        out.append(field(match.group(1)) + direction)
    if not out:
        raise ValueError("$orderby needs at least one property")
    return ",".join(out)
