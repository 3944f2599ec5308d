"""Polling queries read only the rows the timeline has after their bound, and answer as a full scan.

Every scenario changes the data the way the sandbox can (creates at chosen and equal moments,
clock skew, edits that move records back and forth, bulk updates, deletes with cascades, a
reset, page mutation), then a corpus of queries is answered twice: narrowed by the timeline
(what the API does) and by reading the whole table (``narrow=False``). The answers, errors
included, must be identical.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from worker.practicepanther import resources
from worker.sandbox.clock import format_timestamp, parse_timestamp
from worker.sandbox.config import SandboxConfig
from worker.sandbox.errors import ApiError
from worker.sandbox.listing import Page, list_records
from worker.sandbox.state import SandboxState
from worker.sandbox.store import Row
from worker.sandbox.timeline import Timeline, instant

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMED = ("matters", "tasks", "notes", "time_entries", "accounts")  # models with updated_at
UNTIMED = ("contacts", "relationships", "custom_fields", "tags")  # without (tags: no updated_since)


# -- the pieces ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 3, 1, 23, 59, 59, 1000, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2026, 3, 1, 12, 0, 0, 500),
        datetime(2026, 3, 1, 12, 0),
    ],
)
def test_instant_is_the_rendered_updated_at(moment: datetime) -> None:
    assert instant(moment) == parse_timestamp(format_timestamp(moment))


def _row(seq: int, moment: datetime) -> Row:
    return Row(f"r{seq}", {}, moment, moment, seq)


def test_timeline_orders_by_instant_then_insertion() -> None:
    timeline = Timeline()
    rows = [_row(1, BASE + timedelta(seconds=2)), _row(2, BASE), _row(3, BASE), _row(4, BASE)]
    for row in rows:
        timeline.add(row)
    assert [r.seq for r in timeline.since(BASE)] == [2, 3, 4, 1]
    assert [r.seq for r in timeline.since(BASE, strict=True)] == [1]
    assert timeline.since(BASE + timedelta(seconds=3)) == []
    rows[1].modified = BASE + timedelta(seconds=5)
    timeline.move(rows[1])
    timeline.remove(rows[2])
    assert [r.seq for r in timeline.since(BASE)] == [4, 1, 2]
    timeline.move(rows[2])  # no longer stored: stays out
    assert len(timeline) == 3


def test_sub_millisecond_times_sit_at_their_rendered_instant() -> None:
    timeline = Timeline()
    timeline.add(_row(1, BASE + timedelta(microseconds=999)))
    assert [r.seq for r in timeline.since(BASE)] == [1]
    assert timeline.since(BASE, strict=True) == []


# -- scenarios ------------------------------------------------------------------------------
def _state() -> SandboxState:
    return SandboxState(SandboxConfig(seed=1))


def _create_matters(state: SandboxState, count: int, dice: random.Random) -> None:
    """Matters at a few moments each (many share a timestamp), some with sub-millisecond parts."""
    account = next(state.db.iter_rows("accounts")).id
    for i in range(count):
        at = BASE + timedelta(milliseconds=dice.randrange(12) * 250, microseconds=dice.choice((0, 0, 400)))
        status = dice.choice(("Open", "Closed", "Pending"))
        body = {"name": f"M{i}", "status": status, "account_ref": {"id": account}}
        state.records.create("matters", body, at=at, trusted=True)


def _skewed_creates(state: SandboxState) -> None:
    """The server clock runs behind: new rows are older than rows already stored."""
    state.clock.set_skew(-86400)
    for i in range(5):
        state.records.create("matters", {"name": f"skewed {i}", "status": "Open"}, trusted=True)
    state.clock.set_skew(0)


def _moves(state: SandboxState, dice: random.Random) -> None:
    """Edits that move records later, earlier and onto a timestamp others already have."""
    for resource in ("matters", "tasks"):
        rows = state.db.rows(resource)
        for row in dice.sample(rows, 10):
            at = BASE + timedelta(milliseconds=dice.randrange(-8, 12) * 250)
            state.records.update(resource, row.id, {"description": "moved"}, at=at)


def _bulk(state: SandboxState) -> None:
    state.bulk_touch("matters", 40)
    state.records.touch("tasks", state.db.rows("tasks")[:30], BASE + timedelta(seconds=1))


def _deletes(state: SandboxState, dice: random.Random) -> None:
    """Deleted matters take their tasks and notes with them; a deleted account takes its contacts."""
    for row in dice.sample(state.db.rows("matters"), 8):
        state.records.delete("matters", row.id)
    state.records.delete("accounts", state.db.rows("accounts")[-1].id)


def _scenarios() -> Iterator[tuple[str, SandboxState]]:
    dice = random.Random(7)
    state = _state()
    yield "seeded", state
    _create_matters(state, 300, dice)
    yield "equal timestamps", state
    _skewed_creates(state)
    yield "clock skew", state
    _moves(state, dice)
    yield "moved", state
    _bulk(state)
    yield "bulk update", state
    _deletes(state, dice)
    yield "deletes", state
    state.reset()
    yield "reset", state


# -- the corpus -----------------------------------------------------------------------------
def _bounds(state: SandboxState, resource: str) -> list[str]:
    """Timestamps at and between the table's own: its ends, quantiles, and sub-millisecond ones."""
    stamps = sorted({instant(row.modified) for row in state.db.iter_rows(resource)})
    picked = [stamps[int(q * (len(stamps) - 1))] for q in (0, 0.25, 0.5, 0.9, 1)] if stamps else [BASE]
    texts = [format_timestamp(s) for s in picked]
    texts += [format_timestamp(picked[2]) + "4", format_timestamp(picked[-1] + timedelta(seconds=1))]
    return texts


def _queries(state: SandboxState, resource: str) -> Iterator[dict[str, str]]:
    stamps = _bounds(state, resource)
    orders = ({"$orderby": "updated_at,id", "$top": "50"}, {}, {"$orderby": "id desc", "$skip": "3"})
    later = f"updated_at gt {stamps[1]}Z"
    for t in stamps:
        z = f"{t}Z"
        filters = [
            f"updated_at ge {z}",
            f"updated_at gt {z}",
            f"updated_at ge {t}+02:00",
            f"updated_at ge {z} and updated_at lt {stamps[-2]}Z",
            f"(updated_at gt {stamps[0]}Z and id ne null) and updated_at ge {z}",
            f"updated_at ge {z} or created_at lt {stamps[1]}Z",  # must not be narrowed
            f"not (updated_at lt {z})",
            f"{z} le updated_at",
            f"updated_at ge {t[:10]}",  # a date literal
            f"updated_at ge {t}",  # no time zone: 400
            f"created_at ge {z}",
        ]
        if resource == "matters":
            filters += [
                f"updated_at ge {z} and status eq 'Open'",
                f"status eq 'Closed' and updated_at gt {t}Z",
            ]
        for text in filters:
            for extra in orders:
                yield {"$filter": text, **extra}
        for since in (t, z, t[:10], f"{t}123", "not a time"):
            yield {"updated_since": since, "$orderby": "updated_at,id", "$top": "40"}
            yield {"updated_since": since, "$orderby": "id desc", "$skip": "1", "$top": "40"}
            yield {"updated_since": since, "$filter": later, "$skip": "2", "$top": "5"}
        yield {"updated_since": t, "$select": "id,updated_at"}
        yield {"updated_since": t, "$orderby": "display_name"}


def _answer(state: SandboxState, resource: str, params: dict[str, str], *, narrow: bool) -> Any:
    try:
        page = list_records(state.records, resources.get(resource), params, narrow=narrow)
    except ApiError as error:
        return ("error", error.status, error.body)
    return page


def _check_corpus(state: SandboxState, resource: str) -> int:
    """Compare every query of the corpus; returns how many had a non-empty answer."""
    answered = 0
    for params in _queries(state, resource):
        narrowed = _answer(state, resource, params, narrow=True)
        full = _answer(state, resource, params, narrow=False)
        assert narrowed == full, params
        answered += isinstance(full, Page) and bool(full.records)
    return answered


def _check_timeline(state: SandboxState) -> None:
    """The timeline holds exactly the stored rows, in the order of their rendered updated_at."""
    for name, table in state.db.tables.items():
        placed = state.db.timelines[name].since(datetime.min.replace(tzinfo=UTC))
        assert sorted(r.seq for r in placed) == sorted(r.seq for r in table.values()), name
        assert all(table[r.id] is r for r in placed), name
        keys = [(instant(r.modified), r.seq) for r in placed]
        assert keys == sorted(keys), name


@pytest.mark.parametrize("resource", TIMED + UNTIMED)
def test_narrowed_answers_equal_the_full_scan(resource: str) -> None:
    for scenario, state in _scenarios():
        _check_timeline(state)
        answered = _check_corpus(state, resource)
        assert answered or resource == "tags", (scenario, resource)


def test_many_records_with_one_timestamp_all_come_back() -> None:
    state = _state()
    rows = state.bulk_touch("matters", 30)
    stamp = format_timestamp(rows[0].modified)
    params = {"$filter": f"updated_at ge {stamp}Z", "$orderby": "updated_at,id", "$top": "1000"}
    page = list_records(state.records, resources.get("matters"), params)
    assert {r["id"] for r in page.records} == {r.id for r in rows}
    strictly = {**params, "$filter": f"updated_at gt {stamp}Z"}
    assert list_records(state.records, resources.get("matters"), strictly).records == []


def test_page_mutation_is_seen_by_the_second_evaluation() -> None:
    """Rows an earlier page held move (later and earlier); the page is cut from where they went."""
    state = _state()
    _create_matters(state, 200, random.Random(3))
    matters = resources.get("matters")
    params = {"$filter": f"updated_at ge {format_timestamp(BASE)}Z", "$orderby": "updated_at,id"}
    params |= {"$skip": "20", "$top": "30"}
    moments = iter([BASE + timedelta(seconds=10), BASE - timedelta(seconds=10)])

    def mutate(resource: str, earlier: list[Row]) -> bool:
        state.records.touch(resource, earlier[::3], next(moments))
        return True

    for _ in range(2):
        page = list_records(state.records, matters, params, between_pages=mutate)
        assert page == list_records(state.records, matters, params, narrow=False)
        _check_timeline(state)
