"""``for:`` durations for records already holding the value when the rule first sees them (a new
rule, or a resource primed after it): when the value was set is not known, so the count starts at
the record's ``updated_at`` (an upper bound of it: never early); a moment already past fires only
within ``PPW_TRIGGER_BACKFILL``, as date triggers do; a count already running goes on.

Real state (both backends), the sandbox over HTTP, days passing on time-machine's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import time_machine

from tests.delivery.conftest import START, Firm
from tests.delivery.test_alarms import FOR_RULE, _alarm, _change, _dispatch, _edit, _pump, _rules
from worker.polling import cursors
from worker.polling.cursors import Cursor
from worker.polling.snapshots import snapshotter_for
from worker.practicepanther import resources

NEW_YORK = ZoneInfo("America/New_York")


def _pending_since(firm: Firm, clock: time_machine.Coordinates, days: float, name: str) -> dict[str, Any]:
    """A matter moved to Pending ``days`` before START (the clock is back at START after)."""
    clock.move_to(START - timedelta(days=days))
    pending = _edit(firm, "matters", firm.matter(name)["id"], status="Pending")
    clock.move_to(START)
    return pending


def _primed(firm: Firm, *records: dict[str, Any]) -> None:
    """The matters tracked, as a priming stores them (snapshots and a cursor), before the rule."""
    snapper = snapshotter_for(firm.store, firm.connection, resources.get("matters"))
    now = datetime.now(UTC)
    with firm.store.batch() as batch:
        cursors.write_snapshots(
            batch, firm.connection, "matters", {r["id"]: snapper.take(r) for r in records}
        )
        cursors.write_cursor(
            batch, firm.connection, "matters", Cursor(position=now, primed_at=now, advanced_at=now)
        )


def _ends(record: dict[str, Any], days: int) -> float:
    since = datetime.fromisoformat(record["updated_at"]).replace(tzinfo=UTC)
    return (since.astimezone(NEW_YORK) + timedelta(days=days)).timestamp()


def test_a_record_already_pending_counts_from_its_updated_at(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    pending = _pending_since(firm, clock, 10, "Pending ten days")
    still_open = firm.matter("Open")
    _primed(firm, pending, still_open)
    _rules(firm, FOR_RULE)
    pump, rung = _pump(firm)
    assert pump.sync() == 1
    [(member, moment)] = _alarm(firm)
    assert pending["id"] in member and abs(moment - _ends(pending, 14)) < 1  # four days from now
    assert pump.sync() == 0  # once per rule version

    clock.move_to(datetime.fromtimestamp(moment - 60, UTC))
    assert pump.tick() == 0  # never early
    clock.move_to(datetime.fromtimestamp(moment + 1, UTC))
    assert pump.tick() == 1
    [run_id] = _dispatch(firm, rung[0])
    assert firm.run(run_id).status == "succeeded" and firm.told() == [{"name": "Pending ten days"}]


def test_a_duration_already_over_fires_only_within_the_backfill(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    recent = _pending_since(firm, clock, 20, "Pending twenty days")  # over six days ago
    old = _pending_since(firm, clock, 60, "Pending sixty days")  # over 46 days ago
    _primed(firm, recent, old)
    _rules(firm, FOR_RULE)
    pump, rung = _pump(firm)
    assert pump.sync() == 0 and _alarm(firm) == []  # no surprise backfill

    firm.app.alarms.backfill = 30 * 86400.0  # PPW_TRIGGER_BACKFILL: a month
    _rules(firm, FOR_RULE.replace('"14 days"', '"2 weeks"'))  # a new version is scanned again
    assert pump.sync() == 1
    assert pump.tick() == 1  # at once
    [run_id] = _dispatch(firm, rung[0])
    assert firm.run(run_id).status == "succeeded" and firm.told() == [{"name": "Pending twenty days"}]


def test_a_count_already_running_goes_on_from_the_change(firm: Firm, clock: time_machine.Coordinates) -> None:
    _rules(firm, FOR_RULE)
    pending = _pending_since(firm, clock, 3, "Pending three days")
    clock.move_to(START - timedelta(days=3))
    _dispatch(firm, _change(firm, "matters", pending, status=("Open", "Pending")))  # the change seen
    clock.move_to(START)
    renamed = _edit(firm, "matters", pending["id"], name="Renamed")  # saved again since: updated_at moves
    _primed(firm, renamed)
    _rules(firm, FOR_RULE.replace('"14 days"', '"10 days"'))  # an edited duration
    pump, _rung = _pump(firm)
    assert pump.sync() == 1
    [(_member, moment)] = _alarm(firm)
    assert abs(moment - _ends(pending, 10)) < 1  # from the change, not the later save
