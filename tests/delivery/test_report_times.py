"""How ``ppw runs list --since`` and the console's time filters read a moment: one parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.console.lists import BadFilter, parse_time
from worker.delivery.report import parse_moment, parse_since

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02", datetime(2026, 3, 2, tzinfo=UTC)),
        ("2026-03-02T15:00", datetime(2026, 3, 2, 15, 0, tzinfo=UTC)),  # UTC unless it says otherwise
        ("2026-03-02T15:00Z", datetime(2026, 3, 2, 15, 0, tzinfo=UTC)),
        ("2026-03-02T10:00-05:00", datetime(2026, 3, 2, 15, 0, tzinfo=UTC)),
    ],
)
def test_a_moment_is_utc_unless_it_names_its_offset(text: str, expected: datetime) -> None:
    assert parse_moment(text) == parse_since(text) == parse_time("since", text) == expected.timestamp()


def test_since_also_takes_a_duration_ago() -> None:
    assert parse_since("2h", now=NOW) == NOW - 7200
    assert parse_since("7d", now=NOW) == NOW - 7 * 86400


def test_each_caller_says_what_it_expected() -> None:
    with pytest.raises(ValueError, match="--since 'yesterday': use a duration such as 30m"):
        parse_since("yesterday")
    with pytest.raises(BadFilter, match="until: 'soon' is not a date or time"):
        parse_time("until", "soon")
