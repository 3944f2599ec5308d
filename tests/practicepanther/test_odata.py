"""OData literals, filter helpers and timestamps: the details the live API rejects when wrong."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from worker.practicepanther import odata
from worker.practicepanther.odata import (
    and_,
    contains,
    eq,
    format_timestamp,
    ge,
    gt,
    in_,
    literal,
    lt,
    ne,
    not_,
    or_,
    parse_timestamp,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("O'Brien", "'O''Brien'"),
        ("", "''"),
        ("it''s", "'it''''s'"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (42, "42"),
        (-1.5, "-1.5"),
        (Decimal("12.50"), "12.50"),
        (uuid.UUID("7c72b90d-e329-429d-b197-9e44852ff34d"), "7c72b90d-e329-429d-b197-9e44852ff34d"),
        (datetime(2026, 4, 6, tzinfo=UTC), "2026-04-06T00:00:00Z"),
        (datetime(2026, 4, 6), "2026-04-06T00:00:00Z"),
        (datetime(2026, 4, 6, 2, 30, tzinfo=timezone(timedelta(hours=2))), "2026-04-06T00:30:00Z"),
        (datetime(2026, 4, 6, 0, 0, 0, 733000, tzinfo=UTC), "2026-04-06T00:00:00.733000Z"),
        (date(2026, 4, 6), "2026-04-06T00:00:00Z"),
    ],
)
def test_literal(value: object, expected: str) -> None:
    assert literal(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("NaN")])
def test_literal_refuses_non_finite_numbers(value: object) -> None:
    with pytest.raises(ValueError):
        literal(value)


def test_literal_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        literal(object())


def test_comparisons_and_combinators() -> None:
    since = datetime(2026, 4, 6, tzinfo=UTC)
    assert eq("status", "Open") == "status eq 'Open'"
    assert ne("is_active", False) == "is_active ne false"
    assert ge("amount", 10) == "amount ge 10"
    assert lt("due_date", since) == "due_date lt 2026-04-06T00:00:00Z"
    assert contains("user/name", "O'Neil") == "contains(user/name, 'O''Neil')"
    combined = and_(eq("status", "Open"), gt("updated_at", since))
    assert combined == "(status eq 'Open') and (updated_at gt 2026-04-06T00:00:00Z)"
    assert or_(eq("a", 1), eq("b", 2)) == "(a eq 1) or (b eq 2)"
    assert not_(eq("a", 1)) == "not (a eq 1)"
    assert and_("", eq("a", 1)) == "a eq 1"
    assert (eq("a", 1) & eq("b", 2)) == "(a eq 1) and (b eq 2)"
    assert (eq("a", 1) | ~eq("b", 2)) == "(a eq 1) or (not (b eq 2))"
    assert in_("status", ["Open", "Closed"]) == "(status eq 'Open') or (status eq 'Closed')"


@pytest.mark.parametrize("name", ["status eq 'x' or 1", "a)", "", "1abc", "a//b"])
def test_field_names_cannot_inject(name: str) -> None:
    with pytest.raises(ValueError):
        eq(name, 1)


def test_orderby() -> None:
    assert odata.orderby("updated_at") == "updated_at"
    assert odata.orderby("date desc, id") == "date desc,id"
    assert odata.orderby(["updated_at ASC", "id"]) == "updated_at asc,id"
    with pytest.raises(ValueError):
        odata.orderby("updated_at; drop")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-04-04T00:00:00", datetime(2026, 4, 4, tzinfo=UTC)),
        ("2018-05-18T16:31:19.733", datetime(2018, 5, 18, 16, 31, 19, 733000, tzinfo=UTC)),
        ("2026-04-04T00:00:00Z", datetime(2026, 4, 4, tzinfo=UTC)),
        ("2026-04-04T02:00:00+02:00", datetime(2026, 4, 4, tzinfo=UTC)),
        ("2026-04-04T00:00:00.1234567Z", datetime(2026, 4, 4, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2026-04-04T00:00:00.1234567", datetime(2026, 4, 4, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2026-04-04", datetime(2026, 4, 4, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


def test_parse_timestamp_empty_and_garbage() -> None:
    assert parse_timestamp(None) is None
    assert parse_timestamp("  ") is None
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_format_round_trips() -> None:
    moment = datetime(2026, 4, 4, 12, 0, 1, 5, tzinfo=UTC)
    assert parse_timestamp(format_timestamp(moment)) == moment
