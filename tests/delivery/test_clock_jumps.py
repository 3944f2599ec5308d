"""The wall clock jumps (a suspended VM resumes, NTP steps the clock back): waits and date
triggers still fire exactly once, never before their moment.

A waiting run's moment is stored as a Unix time and compared with the clock when the pump looks
and again when the run wakes, so a jump forward past it wakes the run once at the next look, and a
jump back (before or after the wake was sent) makes it wait on until the moment really comes.
Time-machine moves the clock; the state (both backends) and the sandbox are real.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine

from tests.delivery.conftest import START, Firm
from tests.delivery.test_alarms import DATE_RULE, _alarm, _dispatch, _pump, _rules, _task
from worker.events import Event

DUE = START + timedelta(days=3)  # the firm's rule waits three days


def test_a_jump_forward_past_the_moment_wakes_the_run_once(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    run_id = firm.start(firm.matter())
    assert firm.run(run_id).status == "waiting"
    clock.move_to(DUE + timedelta(days=10))  # the host slept for ten days (within the retention)
    assert firm.pump.tick() == 1 and firm.woken == [run_id]
    assert firm.pump.tick() == 0  # not twice
    assert firm.run(run_id).status == "succeeded"
    assert firm.run(run_id).status == "already"  # a duplicate message
    clock.move_to(DUE + timedelta(days=20))
    assert firm.pump.tick() == 0 and firm.woken == [run_id]
    assert len(firm.told()) == 1 and firm.app.timers.pending(firm.connection) == 0


def test_a_jump_forward_between_the_wake_and_the_run_resends_but_runs_once(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    clock.move_to(DUE + timedelta(seconds=1))
    assert firm.pump.tick() == 1
    clock.move_to(DUE + timedelta(hours=6))  # the clock leaps before the worker took the message
    assert firm.pump.tick() == 1 and firm.woken == [run_id, run_id]  # sent again, as a lost one is
    outcomes = [firm.run(run_id).status, firm.run(run_id).status]
    assert outcomes == ["succeeded", "already"] and len(firm.told()) == 1


def test_a_jump_back_before_the_moment_never_wakes_early(firm: Firm, clock: time_machine.Coordinates) -> None:
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    clock.move_to(DUE - timedelta(seconds=30))
    assert firm.pump.tick() == 0
    clock.move_to(START - timedelta(days=2))  # stepped back two days before the run even began
    assert firm.pump.tick() == 0 and firm.woken == []
    assert firm.run(run_id).status == "waiting" and firm.told() == []  # a stray message: waits on
    wake = firm.app.history.get(firm.connection, run_id).wake_at
    assert wake is not None and abs(wake - DUE.timestamp()) < 5  # the moment is not counted again
    clock.move_to(DUE + timedelta(seconds=1))
    assert firm.pump.tick() == 1 and firm.run(run_id).status == "succeeded"
    assert firm.pump.tick() == 0 and len(firm.told()) == 1


def test_a_jump_back_after_the_wake_was_sent_waits_again_then_runs_once(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    clock.move_to(DUE + timedelta(seconds=1))
    assert firm.pump.tick() == 1
    clock.move_to(DUE - timedelta(hours=1))  # the clock is corrected back before the worker runs
    assert firm.run(run_id).status == "waiting" and firm.told() == []  # not early
    assert firm.pump.tick() == 0
    clock.move_to(DUE + timedelta(seconds=2))
    assert firm.pump.tick() == 1 and firm.woken == [run_id, run_id]
    assert firm.run(run_id).status == "succeeded" and firm.run(run_id).status == "already"
    assert len(firm.told()) == 1 and firm.app.timers.pending(firm.connection) == 0


MOMENT = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)  # the date rule's moment for a task due the 10th


def _date_rule_task(firm: Firm) -> None:
    _rules(firm, DATE_RULE)
    task = _task(firm, "2026-03-10T00:00:00")
    created = Event.build(
        type="created", resource="tasks", record_id=task["id"], revision="1",
        connection=firm.connection, record=task,
    )  # fmt: skip
    assert _dispatch(firm, created) == []
    [(_member, moment)] = _alarm(firm)
    assert moment == MOMENT.timestamp()


def test_a_date_trigger_fires_once_across_a_jump_forward(firm: Firm, clock: time_machine.Coordinates) -> None:
    _date_rule_task(firm)
    pump, rung = _pump(firm)
    clock.move_to(MOMENT + timedelta(days=5))
    assert pump.tick() == 1 and pump.tick() == 0
    [due] = rung
    [run_id] = _dispatch(firm, due)
    assert _dispatch(firm, due) == []  # the same due event again: nothing more
    assert firm.run(run_id).status == "succeeded" and len(firm.told()) == 1
    clock.move_to(MOMENT + timedelta(days=30))
    assert pump.tick() == 0 and len(rung) == 1


def test_a_date_trigger_never_rings_early_across_a_jump_back(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _date_rule_task(firm)
    pump, rung = _pump(firm)
    clock.move_to(MOMENT - timedelta(seconds=1))
    assert pump.tick() == 0
    clock.move_to(MOMENT - timedelta(days=3))  # stepped back
    assert pump.tick() == 0 and rung == [] and len(_alarm(firm)) == 1
    clock.move_to(MOMENT + timedelta(seconds=1))
    assert pump.tick() == 1
    clock.move_to(MOMENT - timedelta(hours=2))  # back again, after it rang
    assert pump.tick() == 0
    clock.move_to(MOMENT + timedelta(hours=1))
    assert pump.tick() == 0 and len(rung) == 1
    [run_id] = _dispatch(firm, rung[0])
    assert firm.run(run_id).status == "succeeded" and len(firm.told()) == 1
