"""A rule deleted or disabled retires its waiting runs and its alarms when the rules reload, not
only when they wake; an edited rule keeps its waiting runs on the version they started with.

The scheduler's leader does it (:meth:`AlarmPump.retire`, called by every look): each waiting run
ends as ``cancelled`` with a reason naming the deletion or disabling, visible in ``ppw runs``, its
timer gone; the rule's date and "for" alarms are dropped. Idempotent, and a second leader finds
nothing left to do. Real state (both backends), the sandbox over HTTP, time-machine's clock.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from typer.testing import CliRunner

from tests.delivery.conftest import RULE, Firm
from tests.delivery.test_alarms import DATE_RULE, _alarm, _change, _dispatch, _task
from worker.cli import app as cli
from worker.delivery.alarms import RETIRE_RETRY, AlarmPump
from worker.delivery.history import run_lease_key
from worker.delivery.rulebook import EngineRuleBook
from worker.events import Event
from worker.rules.watcher import RuleRegistry
from worker.settings import get_settings
from worker.state.locks import Lease


def _leader(firm: Firm, rules: EngineRuleBook | None = None) -> AlarmPump:
    """The leader's alarm pump (a fresh one: a new leader after a failover)."""
    book = rules or firm.app.rules
    options = firm.app.options
    return AlarmPump(firm.app.alarms, firm.connection, lambda _e: None, book.versions, options=options)


def _with_date_rule(firm: Firm) -> dict[str, str]:
    """The firm's waiting rule beside a date rule with an alarm pending."""
    (firm.rules_dir / "timed.yaml").write_text(DATE_RULE.format(url=firm.stub.url))
    firm.registry.load()
    task = _task(firm, "2026-03-10T00:00:00")
    _dispatch(firm, _change(firm, "tasks", task, due_date=(None, task["due_date"])))
    assert len(_alarm(firm)) == 1
    return task


def _cli(firm: Firm, *args: str) -> str:
    env = {
        "PPW_STATE_URL": firm.store.url,
        "PPW_CONNECTION_ID": firm.connection,
        "PPW_RULES_DIR": str(firm.rules_dir),
    }
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def test_a_deleted_rule_cancels_its_waiting_runs_at_the_reload(
    firm: Firm, clock: time_machine.Coordinates, caplog: pytest.LogCaptureFixture
) -> None:
    _with_date_rule(firm)
    leader = _leader(firm)
    assert leader.retire() == 0  # the rules in force are noted
    runs = [firm.start(firm.matter(f"Matter {n}")) for n in range(3)]
    assert [firm.run(r).status for r in runs] == ["waiting"] * 3
    (firm.rules_dir / "follow-up.yaml").unlink()
    (firm.rules_dir / "timed.yaml").unlink()
    firm.registry.load()

    with caplog.at_level("INFO", logger="worker.delivery"):
        assert leader.retire() == 3
    for run_id in runs:
        run = firm.app.history.get(firm.connection, run_id)
        assert run.status == "cancelled" and run.wake_at is None
        assert run.reason == "the rule was deleted while the run waited (rules reloaded)"
    assert firm.app.timers.pending(firm.connection) == 0 and _alarm(firm) == []
    assert "rule(s) due-reminder, follow-up deleted or disabled: 3 waiting run(s) cancelled" in caplog.text
    assert sum(f"run {r} cancelled while waiting" in caplog.text for r in runs) == 3
    listed = _cli(firm, "runs", "list", "--status", "cancelled")
    assert all(r[:12] in listed for r in runs) and "the rule was deleted while the run waited" in listed

    assert leader.retire() == 0 and _leader(firm).retire() == 0  # once; a new leader: nothing left
    clock.shift(timedelta(days=3, seconds=1))
    assert firm.pump.tick() == 0 and firm.told() == []


def test_a_disabled_rule_cancels_its_waiting_runs_and_drops_its_alarms(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _with_date_rule(firm)
    leader = _leader(firm)
    leader.retire()
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    text = RULE.format(mode="parallel", wait='{for: "3 days"}', url=firm.stub.url)
    (firm.rules_dir / "follow-up.yaml").write_text(text.replace("  mode:", "  enabled: false\n  mode:"))
    timed = DATE_RULE.format(url=firm.stub.url).replace("  conditions:", "  enabled: false\n  conditions:")
    (firm.rules_dir / "timed.yaml").write_text(timed)
    firm.registry.load()
    assert not firm.registry.status()["errors"]
    assert leader.retire() == 1
    run = firm.app.history.get(firm.connection, run_id)
    assert run.status == "cancelled" and "the rule was disabled" in (run.reason or "")
    assert _alarm(firm) == [] and firm.app.timers.pending(firm.connection) == 0


def test_an_edited_rule_keeps_its_waiting_runs_on_their_version(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    leader = _leader(firm)
    leader.retire()
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    started = firm.app.history.get(firm.connection, run_id).rule_version
    edited = RULE.format(mode="parallel", wait='{for: "3 days"}', url=firm.stub.url).replace("/tell", "/told")
    (firm.rules_dir / "follow-up.yaml").write_text(edited)
    firm.registry.load()
    now_version = firm.registry.status()["rules"]["follow-up"]
    assert now_version != started
    assert leader.retire() == 0
    assert firm.app.history.get(firm.connection, run_id).status == "waiting"
    listed = _cli(firm, "runs", "list", "--status", "waiting")
    assert f"rule version {started[:8]}" in listed
    assert started in _cli(firm, "runs", "show", run_id)

    clock.shift(timedelta(days=3, seconds=1))
    assert firm.run(run_id).status == "succeeded"
    assert [r.path for r in firm.stub.requests] == ["/tell"]  # the version it started with


def test_a_run_being_executed_is_retired_once_its_worker_lets_go(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    leader = _leader(firm)
    leader.retire()
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    lease = Lease(firm.store, run_lease_key(firm.connection, run_id), ttl=30)
    assert lease.acquire()  # a worker holds it
    (firm.rules_dir / "follow-up.yaml").unlink()
    firm.registry.load()
    assert leader.retire() == 0
    assert firm.app.history.get(firm.connection, run_id).status == "waiting"
    assert leader.retire() == 0  # not again at once: a few seconds later
    lease.release()
    clock.shift(timedelta(seconds=RETIRE_RETRY + 1))
    assert leader.retire() == 1
    assert firm.app.history.get(firm.connection, run_id).status == "cancelled"
    assert _leader(firm).retire() == 0


def test_a_broken_or_unreadable_rule_is_not_taken_for_deleted(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    _leader(firm).retire()
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    path = firm.rules_dir / "follow-up.yaml"
    good = path.read_text()
    path.write_text(good.replace("type: wait", "type: wiat"))  # a broken edit, seen by a new leader
    restarted = RuleRegistry(settings=firm.settings)
    restarted.load()
    assert restarted.ruleset.get("follow-up") is None and restarted.ruleset.broken
    book = EngineRuleBook(lambda: restarted.engine, firm.settings)
    assert _leader(firm, book).retire() == 0
    path.write_text("- id: follow-up\n  trigger: [unclosed\n")  # not even YAML
    restarted.load()
    assert _leader(firm, book).retire() == 0
    assert firm.app.history.get(firm.connection, run_id).status == "waiting"


def test_the_leader_retires_on_its_own_looks(firm: Firm, clock: time_machine.Coordinates) -> None:
    leader = _leader(firm)
    leader.tick()
    run_id = firm.start(firm.matter())
    firm.run(run_id)
    (firm.rules_dir / "follow-up.yaml").unlink()
    firm.registry.load()
    leader.tick()
    assert firm.app.history.get(firm.connection, run_id).status == "cancelled"


def test_a_due_event_of_a_rule_gone_fires_nothing(firm: Firm, clock: time_machine.Coordinates) -> None:
    """The alarm rang before the rule was deleted: its due event finds no rule."""
    task = _with_date_rule(firm)
    due = Event.build(
        type="due", resource="tasks", record_id=task["id"], revision="due:due-reminder:x",
        connection=firm.connection, record={"id": task["id"]}, rule="due-reminder",
    )  # fmt: skip
    (firm.rules_dir / "timed.yaml").unlink()
    firm.registry.load()
    assert _dispatch(firm, due) == []
