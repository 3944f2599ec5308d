"""The per-record work of reading a page, done once: same results as doing it every time.

A poll re-reads every record changed within the overlap, so the timestamp strings it parses and
the records it normalises are mostly the ones of the previous poll. These pin that the shortcuts
(remembered timestamp conversions, in-place normalisation of decoded pages, one parse of each
``updated_at`` per page) give exactly what the plain way gives.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.polling.paging import PageReader, Query
from worker.polling.snapshots import normal_form, revision_of, revision_text
from worker.practicepanther import records, resources
from worker.practicepanther.odata import parse_timestamp
from worker.sandbox import SandboxConfig
from worker.sandbox.state import SandboxState

MATTERS = resources.get("matters")
SPELLINGS = [
    "2026-04-01T10:00:00",
    "2026-04-01T10:00:00Z",
    "2026-04-01T10:00:00.550",
    "2026-04-01T12:00:00+02:00",
    "2026-04-01T10:00:00.1234567",
    "2026-04-01",
    " 2026-04-01T10:00:00 ",
]


@pytest.mark.parametrize("text", SPELLINGS)
def test_a_remembered_timestamp_is_the_one_parsed(text: str) -> None:
    first, again = parse_timestamp(text), parse_timestamp(text)
    expected = datetime.fromisoformat(text.strip())
    expected = expected.replace(tzinfo=UTC) if expected.tzinfo is None else expected.astimezone(UTC)
    assert first == again == expected and first is not None and first.tzinfo is UTC
    assert revision_of(text) == revision_text(expected)


def test_garbage_fails_every_time_and_empty_is_none() -> None:
    for _ in range(2):
        with pytest.raises(ValueError):
            parse_timestamp("yesterday")
        assert parse_timestamp("  ") is None and parse_timestamp(None) is None
        assert revision_of("yesterday") is None and revision_of(None) is None and revision_of(17) is None
    with pytest.raises(AttributeError):
        parse_timestamp(17)  # type: ignore[arg-type]


def test_datetime_fields_still_compare_as_instants() -> None:
    spec = MATTERS.fields["open_date"]
    forms = {normal_form(text, spec) for text in ["2026-04-01T10:00:00", "2026-04-01T12:00:00+02:00"]}
    assert forms == {"2026-04-01T10:00:00.000000Z"}
    assert normal_form("not a date", spec) == "not a date"


@pytest.fixture(scope="module")
def seeded() -> SandboxState:
    return SandboxState(SandboxConfig(seed=1))


def test_in_place_normalisation_equals_normalize(seeded: SandboxState) -> None:
    odd = {"open_date": "garbage", "close_date": "2026-04-01T12:00:00+02:00", "created_at": ""}
    for resource in resources.pollable():
        page = [seeded.records.render(resource.name, row) for row in seeded.db.rows(resource.name)]
        page = json.loads(json.dumps(page + [{**r, **odd} for r in page[:3]]))
        expected = [records.normalize(item, resource.definition) for item in page]
        decoded = copy.deepcopy(page)
        assert records.normalize_in_place(decoded, resource.definition) is decoded
        assert decoded == expected, resource.name


def test_in_place_normalisation_converts_nested_datetimes_and_leaves_references() -> None:
    reference = {"id": "A1", "display_name": "Acme"}
    record = {
        "id": "M1",
        "account_ref": reference,
        "updated_at": "2026-04-01T10:00:00.550",
        "custom_field_values": [{"value_date_time": "2026-04-02T00:00:00", "custom_field_ref": {"id": "F"}}],
    }
    normalised = records.normalize_in_place(record, MATTERS.definition)
    assert normalised["updated_at"] == "2026-04-01T10:00:00.550000Z"
    assert normalised["custom_field_values"][0]["value_date_time"] == "2026-04-02T00:00:00Z"
    assert normalised["account_ref"] is reference == {"id": "A1", "display_name": "Acme"}


class Pages:
    """A list endpoint over fixed records, honouring ``updated_at ge``, ``$skip`` and ``$top``."""

    def __init__(self, rows: list[dict[str, Any]], *, repeat_last: bool = False) -> None:
        self.rows = sorted(rows, key=lambda r: (parse_timestamp(r["updated_at"]), r["id"]))
        self.repeat_last = repeat_last

    def list_page(self, resource: str, **kwargs: Any) -> list[dict[str, Any]]:
        rows = self.rows
        if kwargs.get("filter"):
            lower = parse_timestamp(str(kwargs["filter"]).split(" ge ")[1])
            rows = [r for r in rows if (parse_timestamp(r["updated_at"]) or lower) >= lower]  # type: ignore[operator]
        skip = kwargs.get("skip") or 0
        page = [dict(r) for r in rows[skip : skip + kwargs["top"]]]
        if self.repeat_last and page:
            page.append(dict(page[-1]))  # the service lists one revision twice
        return page


T0 = datetime(2026, 4, 1, 10, tzinfo=UTC)


def rows(count: int) -> list[dict[str, Any]]:
    """Records sharing timestamps (bulk updates), so pages also continue by offset."""
    return [
        {"id": f"r{i:03d}", "updated_at": (T0 + timedelta(seconds=i // 4)).isoformat()} for i in range(count)
    ]


@pytest.mark.parametrize("use_updated_since", [False, True], ids=["filter", "updated_since"])
@pytest.mark.parametrize("page_size", [2, 3, 5, 50])
def test_every_record_is_read_once(use_updated_since: bool, page_size: int) -> None:
    query = Query(MATTERS, since=None, use_updated_since=use_updated_since, page_size=page_size)
    read = [r["id"] for page in PageReader(Pages(rows(23)), query) for r in page]
    assert read == [r["id"] for r in Pages(rows(23)).rows]


def test_a_revision_listed_twice_on_one_page_is_kept_twice_as_before() -> None:
    query = Query(MATTERS, since=None, use_updated_since=True, page_size=50)
    [page] = list(PageReader(Pages(rows(3), repeat_last=True), query))
    assert [r["id"] for r in page] == ["r000", "r001", "r002", "r002"]
