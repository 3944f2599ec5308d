"""Date-relative (``at:``) and "for" triggers: alarms set by dispatch, rung by the leader's pump.

On real state (both backends) and the sandbox over HTTP, with days passing on time-machine's
clock: a date rule fires once at its moment, not on the change; moving the date moves it,
clearing it cancels it, a date moved in PracticePanther before the poll saw it fires nothing;
records tracked before the rule get their future alarms and none that are past; a "for" trigger
fires when the field held its value for the whole duration, counted from the change's own time,
and any change of it before then cancels.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from typer.testing import CliRunner

from tests.delivery.conftest import Firm
from worker.cli import app as cli
from worker.delivery.alarms import AlarmPump, alarms_key
from worker.events import Change, Event
from worker.polling import cursors
from worker.polling.cursors import Cursor
from worker.polling.snapshots import snapshotter_for
from worker.practicepanther import resources
from worker.settings import get_settings

DATE_RULE = """\
- id: due-reminder
  trigger: {{resource: tasks, at: due_date, offset: "-1 business day", time: "09:00"}}
  conditions:
    - record.status != 'Completed'
  steps:
    - type: http.request
      with: {{url: "{url}/tell", json: {{subject: "{{{{ record.subject }}}}"}}}}
"""

FOR_RULE = """\
- id: pending-too-long
  trigger: {{resource: matters, changed: status, to: Pending, for: "14 days"}}
  steps:
    - type: http.request
      with: {{url: "{url}/tell", json: {{name: "{{{{ record.name }}}}"}}}}
"""


def _rules(firm: Firm, text: str) -> None:
    (firm.rules_dir / "follow-up.yaml").unlink(missing_ok=True)
    (firm.rules_dir / "timed.yaml").write_text(text.format(url=firm.stub.url))
    firm.registry.load()
    assert not firm.registry.status()["errors"], firm.registry.status()["errors"]


def _pump(firm: Firm) -> tuple[AlarmPump, list[Event]]:
    rung: list[Event] = []

    def emit(events: list[Event]) -> None:
        firm.app.events.save_many(events)
        rung.extend(events)

    return AlarmPump(firm.app.alarms, firm.connection, emit, firm.app.rules.versions), rung


def _dispatch(firm: Firm, event: Event) -> list[str]:
    firm.app.events.save(event)
    [result] = firm.dispatcher.dispatch_many(firm.connection, [event.id], lambda *_: None)
    return result.runs


def _change(firm: Firm, resource: str, record: dict[str, Any], **changes: tuple[Any, Any]) -> Event:
    return Event.build(
        type="updated",
        resource=resource,
        record_id=record["id"],
        revision=str(record.get("updated_at")),
        connection=firm.connection,
        record=record,
        changes={name: Change(old=old, new=new) for name, (old, new) in changes.items()},
    )


def _task(firm: Firm, due: str, subject: str = "File the response") -> dict[str, Any]:
    body = {"subject": subject, "due_date": due, "status": "NotCompleted"}
    created: dict[str, Any] = firm.admin.mutate([{"op": "create", "resource": "tasks", "data": body}])[0]
    return created


def _edit(firm: Firm, resource: str, record_id: str, **data: Any) -> dict[str, Any]:
    found: dict[str, Any] = firm.admin.mutate(
        [{"op": "update", "resource": resource, "id": record_id, "data": data}]
    )[0]
    return found


def _alarm(firm: Firm) -> list[tuple[str, float]]:
    return firm.store.zrange_by_score(alarms_key(firm.connection))


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_date_trigger_fires_once_at_its_moment_not_on_the_change(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _rules(firm, DATE_RULE)
    task = _task(firm, "2026-03-10T00:00:00")  # a Tuesday: one business day before is Monday 9th
    created = Event.build(
        type="created",
        resource="tasks",
        record_id=task["id"],
        revision="1",
        connection=firm.connection,
        record=task,
    )
    assert _dispatch(firm, created) == []  # the change itself fires nothing
    [(_member, moment)] = _alarm(firm)
    assert moment == _utc("2026-03-09T13:00:00+00:00")  # 09:00 in New York (EDT since the 8th)

    pump, rung = _pump(firm)
    assert pump.tick() == 0
    clock.move_to(datetime(2026, 3, 9, 13, 0, 1, tzinfo=UTC))
    assert pump.tick() == 1 and _alarm(firm) == []
    [due] = rung
    assert due.type == "due" and due.rule == "due-reminder"
    [run_id] = _dispatch(firm, due)
    assert firm.run(run_id).status == "succeeded"
    assert firm.told() == [{"subject": "File the response"}]
    assert _dispatch(firm, due) == []  # once


def test_moving_the_date_moves_the_alarm_and_clearing_it_cancels(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _rules(firm, DATE_RULE)
    task = _task(firm, "2026-03-10T00:00:00")
    _dispatch(firm, _change(firm, "tasks", task, due_date=(None, task["due_date"])))
    moved = _edit(firm, "tasks", task["id"], due_date="2026-03-20T00:00:00")
    _dispatch(firm, _change(firm, "tasks", moved, due_date=(task["due_date"], moved["due_date"])))
    [(_member, moment)] = _alarm(firm)
    assert moment == _utc("2026-03-19T13:00:00+00:00")
    cleared = _edit(firm, "tasks", task["id"], due_date=None)
    _dispatch(firm, _change(firm, "tasks", cleared, due_date=(moved["due_date"], None)))
    assert _alarm(firm) == []


def test_a_date_moved_before_the_poll_saw_it_fires_nothing(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _rules(firm, DATE_RULE)
    task = _task(firm, "2026-03-10T00:00:00")
    _dispatch(firm, _change(firm, "tasks", task, due_date=(None, task["due_date"])))
    _edit(firm, "tasks", task["id"], due_date="2026-04-10T00:00:00")  # not polled yet
    clock.move_to(datetime(2026, 3, 9, 13, 0, 1, tzinfo=UTC))
    pump, rung = _pump(firm)
    pump.tick()
    assert _dispatch(firm, rung[0]) == [] and firm.told() == []


def test_records_tracked_before_the_rule_get_their_future_alarms_only(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    past, future = _task(firm, "2026-02-10T00:00:00", "old"), _task(firm, "2026-03-25T00:00:00", "new")
    tasks = resources.get("tasks")
    snapper = snapshotter_for(firm.store, firm.connection, tasks)
    now = datetime.now(UTC)
    with firm.store.batch() as batch:  # as a priming stores them
        cursors.write_snapshots(
            batch, firm.connection, "tasks", {t["id"]: snapper.take(t) for t in (past, future)}
        )
        cursors.write_cursor(
            batch, firm.connection, "tasks", Cursor(position=now, primed_at=now, advanced_at=now)
        )
    _rules(firm, DATE_RULE)
    pump, _rung = _pump(firm)
    assert pump.sync() == 1
    [(member, moment)] = _alarm(firm)
    assert future["id"] in member and moment == _utc("2026-03-24T13:00:00+00:00")
    assert pump.sync() == 0  # once per rule version


def test_a_for_trigger_fires_when_the_value_held_for_the_whole_duration(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _rules(firm, FOR_RULE)
    matter = firm.matter()
    pending = _edit(firm, "matters", matter["id"], status="Pending")
    assert _dispatch(firm, _change(firm, "matters", pending, status=("Open", "Pending"))) == []
    [(_member, moment)] = _alarm(firm)
    changed_at = datetime.fromisoformat(pending["updated_at"]).replace(tzinfo=UTC)
    # from the change's own time, 14 days of the firm's wall clock (DST starts on the 8th)
    wall = changed_at.astimezone(ZoneInfo("America/New_York")) + timedelta(days=14)
    assert abs(moment - wall.timestamp()) < 2

    clock.shift(timedelta(days=14, minutes=1))
    pump, rung = _pump(firm)
    assert pump.tick() == 1
    [run_id] = _dispatch(firm, rung[0])
    assert firm.run(run_id).status == "succeeded" and firm.told() == [{"name": "Estate of Smith"}]


def test_a_change_of_the_field_before_then_cancels(firm: Firm, clock: time_machine.Coordinates) -> None:
    _rules(firm, FOR_RULE)
    matter = firm.matter()
    pending = _edit(firm, "matters", matter["id"], status="Pending")
    _dispatch(firm, _change(firm, "matters", pending, status=("Open", "Pending")))
    clock.shift(timedelta(days=3))
    reopened = _edit(firm, "matters", matter["id"], status="Open")
    _dispatch(firm, _change(firm, "matters", reopened, status=("Pending", "Open")))
    assert _alarm(firm) == []


def test_a_for_trigger_checks_the_value_again_when_it_rings(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _rules(firm, FOR_RULE)
    matter = firm.matter()
    pending = _edit(firm, "matters", matter["id"], status="Pending")
    _dispatch(firm, _change(firm, "matters", pending, status=("Open", "Pending")))
    _edit(firm, "matters", matter["id"], status="Closed")  # the poll has not seen it yet
    clock.shift(timedelta(days=14, minutes=1))
    pump, rung = _pump(firm)
    pump.tick()
    assert _dispatch(firm, rung[0]) == [] and firm.told() == []


def test_ppw_timers_list_shows_triggers_and_waiting_runs(firm: Firm, clock: time_machine.Coordinates) -> None:
    _rules(firm, DATE_RULE)
    task = _task(firm, "2026-03-10T00:00:00")
    _dispatch(firm, _change(firm, "tasks", task, due_date=(None, task["due_date"])))
    firm.reload()  # the firm's waiting rule (follow-up.yaml) back, beside the date rule
    run_id = firm.start(firm.matter())
    assert firm.run(run_id).status == "waiting"
    env = {
        "PPW_STATE_URL": firm.store.url,
        "PPW_CONNECTION_ID": firm.connection,
        "PPW_RULES_DIR": str(firm.rules_dir),
    }
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["timers", "list"], env=env, catch_exceptions=False)
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "date and duration triggers pending: 1" in result.output
    assert f"2026-03-09 13:00:00Z  due-reminder  tasks {task['id']}" in result.output
    assert (
        "waiting runs: 1" in result.output
        and run_id[:12] in result.output
        and "at step later" in result.output
    )
    get_settings.cache_clear()
    as_json = CliRunner().invoke(cli, ["timers", "list", "--json", "--rule", "follow-up"], env=env)
    get_settings.cache_clear()
    data = json.loads(as_json.output)
    assert data["triggers"] == [] and [w["run"] for w in data["waiting_runs"]] == [run_id]


FETCH_RULE = """\
- id: detailed
  trigger: {{resource: matters, on: updated, fetch: true}}
  steps:
    - type: http.request
      with: {{url: "{url}/tell", json: {{name: "{{{{ record.name }}}}"}}}}
"""


def test_fetch_true_reads_the_detailed_record_before_the_rules(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _rules(firm, FETCH_RULE)
    matter = firm.matter()
    _edit(firm, "matters", matter["id"], name="Estate of Smith (renamed)")
    stale = _change(firm, "matters", matter, status=("Pending", "Open"))  # listed before the rename
    [run_id] = _dispatch(firm, stale)
    assert firm.run(run_id).status == "succeeded"
    assert firm.told() == [{"name": "Estate of Smith (renamed)"}]


def test_a_backfill_window_fires_recent_past_moments_once(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _rules(firm, DATE_RULE)
    firm.app.alarms.backfill = 30 * 86400.0  # PPW_TRIGGER_BACKFILL
    recent, old = _task(firm, "2026-02-20T00:00:00", "recent"), _task(firm, "2026-01-10T00:00:00", "old")
    for task in (recent, old):
        _dispatch(firm, _change(firm, "tasks", task, due_date=(None, task["due_date"])))
    [(member, _moment)] = _alarm(firm)
    assert recent["id"] in member  # a month back at most
    pump, rung = _pump(firm)
    assert pump.tick() == 1
    [run_id] = _dispatch(firm, rung[0])
    assert firm.run(run_id).status == "succeeded" and firm.told() == [{"subject": "recent"}]
    _dispatch(firm, _change(firm, "tasks", recent, status=("Open", "NotCompleted")))  # seen again
    pump.tick()
    assert _dispatch(firm, rung[-1]) == []  # once per date value
