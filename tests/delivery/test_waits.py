"""The ``wait`` step on real state (both backends), the sandbox over HTTP and a controllable clock.

Days pass with time-machine, never with sleep. A waiting run is stored, not held: the message
ends, the timer index wakes it when due (once, however often the pump looks), its record is read
again, ``unless:`` cancels it, a deleted record cancels it, modes ``restart`` and ``single`` act on
a waiting run, a deleted rule cancels it when it wakes, and the state it needs outlives the
retention. ``ppw runs list --status waiting`` and ``ppw runs cancel`` show and end it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from typer.testing import CliRunner

from tests.delivery.conftest import START, Firm
from worker.cli import app as cli
from worker.delivery.ledger import RunKey
from worker.delivery.timers import SENT_TTL, Timers, timers_key
from worker.settings import get_settings


def test_a_run_waits_stored_and_wakes_once_with_the_record_as_it_is_then(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    record = firm.matter()
    run_id = firm.start(record)
    waiting = firm.run(run_id)
    assert waiting.status == "waiting" and waiting.requeue_after is None  # no broker delay
    run = firm.app.history.get(firm.connection, run_id)
    assert run.status == "waiting" and run.waiting_step == "later"
    assert run.wake_at == pytest.approx((START + timedelta(days=3)).timestamp(), abs=5)
    assert run_id not in firm.app.history.active(firm.connection)  # the sweeper leaves it alone
    assert firm.app.timers.pending(firm.connection) == 1 and firm.told() == []

    assert firm.pump.tick() == 0  # nothing due yet
    firm.edit(record["id"], name="Estate of Smith (settled)")
    clock.shift(timedelta(days=3, seconds=1))
    assert firm.pump.tick() == 1 and firm.woken == [run_id]
    assert firm.pump.tick() == 0  # sent already: not twice

    done = firm.run(run_id)
    assert done.status == "succeeded"
    assert firm.told() == [{"name": "Estate of Smith (settled)", "status": "Open"}]  # read again
    assert firm.app.timers.pending(firm.connection) == 0
    assert firm.run(run_id).status == "already" and len(firm.told()) == 1
    later = firm.app.history.get(firm.connection, run_id).step("later")
    assert later is not None and later.status == "done"


def test_a_lost_wake_message_is_sent_again(firm: Firm, clock: time_machine.Coordinates) -> None:
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    clock.shift(timedelta(days=3, seconds=1))
    assert firm.pump.tick() == 1  # the worker that takes it dies: the run is still waiting
    assert firm.pump.tick() == 0  # not twice
    clock.shift(timedelta(seconds=SENT_TTL + 1))
    assert firm.pump.tick() == 1 and firm.woken == [run_id, run_id]
    assert firm.run(run_id).status == "succeeded" and len(firm.told()) == 1


def test_an_early_wake_waits_again(firm: Firm, clock: time_machine.Coordinates) -> None:
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    clock.shift(timedelta(days=1))
    again = firm.run(run_id)  # a duplicate message: not due, so the run waits on
    assert again.status == "waiting" and firm.told() == []
    wake = firm.app.history.get(firm.connection, run_id).wake_at
    assert wake == pytest.approx((START + timedelta(days=3)).timestamp(), abs=5)  # not counted again


def test_unless_cancels_after_the_wait(firm: Firm, clock: time_machine.Coordinates) -> None:
    firm.reload(wait='{for: "7 days", unless: "record.status == \'Closed\'"}')
    record = firm.matter()
    run_id = firm.start(record)
    firm.run(run_id)
    firm.edit(record["id"], status="Closed")
    clock.shift(timedelta(days=7, seconds=1))
    firm.pump.tick()
    outcome = firm.run(run_id)
    assert outcome.status == "cancelled" and firm.told() == []
    run = firm.app.history.get(firm.connection, run_id)
    assert run.status == "cancelled" and "unless" in (run.reason or "")
    assert firm.app.timers.pending(firm.connection) == 0


def test_a_record_deleted_while_waiting_cancels(firm: Firm, clock: time_machine.Coordinates) -> None:
    record = firm.matter()
    run_id = firm.start(record)
    firm.run(run_id)
    firm.admin.mutate([{"op": "delete", "resource": "matters", "id": record["id"]}])
    clock.shift(timedelta(days=3, seconds=1))
    assert firm.run(run_id).status == "cancelled" and firm.told() == []


def test_mode_restart_cancels_the_waiting_run(firm: Firm, clock: time_machine.Coordinates) -> None:
    firm.reload(mode="restart")
    record = firm.matter()
    first = firm.start(record, revision="1")
    firm.run(first)
    clock.shift(timedelta(days=1))
    second = firm.start(record, revision="2")
    assert firm.run(second).status == "waiting"
    assert firm.app.history.get(firm.connection, first).status == "cancelled"
    assert [r for r, _ in Timers(firm.store).due(firm.connection, 1e12)] == [second]
    clock.shift(timedelta(days=3, seconds=1))
    assert firm.run(second).status == "succeeded" and len(firm.told()) == 1


def test_mode_single_ignores_new_events_while_one_waits(firm: Firm, clock: time_machine.Coordinates) -> None:
    firm.reload(mode="single")
    record = firm.matter()
    first = firm.start(record, revision="1")
    firm.run(first)
    second = firm.start(record, revision="2")
    skipped = firm.run(second)
    assert skipped.status == "skipped" and "waiting" in (skipped.run.reason if skipped.run else "")
    assert firm.app.history.get(firm.connection, first).status == "waiting"


def test_a_deleted_rule_cancels_its_waiting_run_when_it_wakes(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    (firm.rules_dir / "follow-up.yaml").unlink()
    firm.registry.load()
    clock.shift(timedelta(days=3, seconds=1))
    outcome = firm.run(run_id)
    assert outcome.status == "cancelled" and firm.told() == []
    assert "deleted or disabled" in (firm.app.history.get(firm.connection, run_id).reason or "")


def test_what_a_waiting_run_needs_outlives_the_retention(firm: Firm, clock: time_machine.Coordinates) -> None:
    firm.reload(wait='{for: "90 days"}')  # longer than the 30-day retention
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    run = firm.app.history.get(firm.connection, run_id)
    store, retention = firm.store, firm.app.options.retention
    assert store.ttl(firm.app.history.key(firm.connection, run_id)) is None
    assert run.wake_at is not None
    waits = run.wake_at - datetime.now(UTC).timestamp()  # 90 days less an hour: DST starts meanwhile
    assert waits == pytest.approx(90 * 86400 - 3600, abs=5)
    noted = firm.app.ledger.keys(RunKey.of(run), ["noted", "later"])
    for ledger_key in noted:
        left = store.ttl(ledger_key)
        assert left is not None and left > waits + retention - 60
    event_left = store.ttl(firm.app.events.key(firm.connection, run.event_id))
    assert event_left is not None and event_left > waits + retention - 60
    assert store.zcard(timers_key(firm.connection)) == 1


def test_until_a_date_with_offset_and_time_in_the_firm_zone(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    firm.reload(wait='{until: "2026-03-20", offset: "-1 business day", at: "09:00"}')
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    wake = firm.app.history.get(firm.connection, run_id).wake_at
    assert wake is not None  # Friday 20th less one business day: Thursday 19th, 09:00 in New York (EDT)
    assert datetime.fromtimestamp(wake, UTC) == datetime(2026, 3, 19, 13, 0, tzinfo=UTC)


def test_ppw_runs_list_waiting_and_cancel(firm: Firm, clock: time_machine.Coordinates) -> None:
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    env = {
        "PPW_STATE_URL": firm.store.url,
        "PPW_CONNECTION_ID": firm.connection,
        "PPW_RULES_DIR": str(firm.rules_dir),
    }
    runner = CliRunner()
    get_settings.cache_clear()
    listed = runner.invoke(cli, ["runs", "list", "--status", "waiting"], env=env, catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    assert run_id[:12] in listed.output and "wakes 2026-03-05 15:00" in listed.output
    get_settings.cache_clear()
    cancelled = runner.invoke(cli, ["runs", "cancel", run_id[:10]], env=env, catch_exceptions=False)
    assert cancelled.exit_code == 0, cancelled.output
    run = firm.app.history.get(firm.connection, run_id)
    assert run.status == "cancelled" and "operator" in (run.reason or "")
    assert firm.app.timers.pending(firm.connection) == 0
    get_settings.cache_clear()
    again = runner.invoke(cli, ["runs", "cancel", run_id], env=env)
    assert again.exit_code != 0 and "only a waiting run" in again.output
    get_settings.cache_clear()


def test_until_takes_a_rendered_custom_date_as_it_comes() -> None:
    """``until: "{{ record.custom['Statute of Limitations'] }}"`` renders an aware datetime, not
    text (the soak benchmark caught the example rule dead-lettering on it)."""
    from worker.actions.wait import WaitParams, WaitStep
    from worker.calendar import Calendar

    statute = datetime(2027, 9, 1, tzinfo=UTC)
    params = WaitParams.model_validate({"until": statute, "offset": "-60 days", "at": "09:00"})
    due = WaitStep.due(params, Calendar("America/New_York"), START.timestamp())
    assert datetime.fromtimestamp(due, UTC) == datetime(2027, 7, 3, 13, 0, tzinfo=UTC)
