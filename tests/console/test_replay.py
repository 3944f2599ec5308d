"""Replaying dead letters from the console: one or all, with the rule version each run started with
or the rule as loaded now (the library function ``ppw dlq replay [--all] [--with-current-rule]``
calls), a confirmation of how many for "replay all", an audit entry per replay, operators only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from worker.console.audit import AuditLog
from worker.console.web import build_app
from worker.delivery.history import EventSummary, Run, StepTrace, run_id_for
from worker.events import Change, Event
from worker.state.base import StateStore

from .conftest import Seeded, console_settings, csrf_of, seed, sign_in

RULES = """\
- id: create-task
  trigger: {resource: matters, on: updated, changed: status}
  steps:
    - id: task
      type: log
      with: {message: "task for {{ record.id }}"}
"""


def add_dead(seeded: Seeded, record_id: str, rule: str = "create-task") -> Run:
    """A dead run of ``rule`` for a new event of matter ``record_id``."""
    app, conn = seeded.ops.app, seeded.connection
    event = Event.build(
        type="updated",
        resource="matters",
        record_id=record_id,
        revision=f"r-{record_id}",
        connection=conn,
        record={"id": record_id, "status": "Closed"},
        changes={"status": Change(old="Open", new="Closed")},
    )
    app.events.save(event)
    summary = EventSummary(
        type="updated", resource="matters", record_id=record_id, revision=event.revision, changed={}
    )
    run = Run(
        id=run_id_for(event.id, rule),
        connection=conn,
        event_id=event.id,
        event=summary,
        rule_id=rule,
        rule_version="v1",
        attempts=5,
        created_at=time.time(),
        steps=[StepTrace(id="task", type="log", status="errored", attempts=5, error="HTTP 503")],
    )
    app.history.create(run)
    return app.dead_letters.add(run, "step task failed 5 times: HTTP 503", failed_step="task")


@pytest.fixture
def dead(store: StateStore, connection_id: str, tmp_path: Path) -> Iterator[Seeded]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "tasks.yaml").write_text(RULES, encoding="utf-8")
    made = seed(store, connection_id, console_settings(store, connection_id, rules))
    add_dead(made, "m-201")
    add_dead(made, "m-202")
    yield made
    made.ops.app.close()


@pytest.fixture
def http(dead: Seeded) -> Iterator[TestClient]:
    with TestClient(build_app(dead.ops), follow_redirects=False) as client:
        yield client


def test_replay_one_with_the_current_rule(http: TestClient, dead: Seeded) -> None:
    token = sign_in(http)
    listing = http.get("/dead-letters").text
    assert listing.count('value="current"') == 3 + 1  # a button a row, and the replay-all choice
    answer = http.post(f"/dead-letters/{dead.dead.id}/replay", data={"csrf": token, "version": "current"})
    assert answer.status_code == 303, answer.text
    run = dead.ops.app.history.get(dead.connection, dead.dead.id)
    current = dead.ops.app.rules.current("create-task")
    assert current is not None and run.rule_version == current.version != "v1"
    assert run.status == "queued" and run.rule_snapshot["id"] == "create-task"
    assert dead.sent == [(dead.connection, dead.dead.id)]
    assert "with the current rule" in http.get(answer.headers["location"]).text  # the flash
    [entry] = AuditLog(dead.store, dead.connection).recent()
    assert (entry.action, entry.target, entry.outcome) == ("replay", dead.dead.id, "done")
    assert "the current rule" in entry.detail


def test_replay_one_with_the_original_rule_version(http: TestClient, dead: Seeded) -> None:
    token = sign_in(http)
    run_page = http.get(f"/runs/{dead.dead.id}").text  # the run's own page offers both too
    assert 'name="version" value="original"' in run_page and 'name="version" value="current"' in run_page
    data = {"csrf": token, "version": "original"}
    assert http.post(f"/dead-letters/{dead.dead.id}/replay", data=data).status_code == 303
    run = dead.ops.app.history.get(dead.connection, dead.dead.id)
    assert run.rule_version == "v1" and run.status == "queued"
    bogus = http.post(f"/dead-letters/{dead.dead.id}/replay", data={"csrf": token, "version": "newest"})
    assert bogus.status_code == 409 and "unknown rule choice" in bogus.text


def test_the_current_rule_must_still_be_loaded(http: TestClient, dead: Seeded) -> None:
    token = sign_in(http)
    gone = add_dead(dead, "m-299", rule="removed-rule")
    answer = http.post(f"/dead-letters/{gone.id}/replay", data={"csrf": token, "version": "current"})
    assert answer.status_code == 409 and "not loaded any more" in answer.text
    assert dead.ops.app.history.get(dead.connection, gone.id).status == "dead" and dead.sent == []


def test_replay_all_confirms_how_many_then_replays_each(http: TestClient, dead: Seeded) -> None:
    sign_in(http)
    confirm = http.get("/dead-letters/replay-all", params={"version": "current"})
    assert confirm.status_code == 200
    assert "Replay 3 dead letter(s)?" in confirm.text and "the current rule" in confirm.text
    token = csrf_of(confirm.text)
    form = {"csrf": token, "version": "current", "count": "3"}
    answer = http.post("/dead-letters/replay-all", data=form)
    assert answer.status_code == 303 and answer.headers["location"] == "/dead-letters"
    assert "replayed 3 dead letter(s) with the current rule" in http.get("/dead-letters").text
    assert len(dead.sent) == 3 and dead.ops.app.dead_letters.count(dead.connection) == 0
    entries = AuditLog(dead.store, dead.connection).recent()
    assert [e.action for e in entries].count("replay") == 3
    assert {e.target for e in entries if e.action == "replay"} == {r for _, r in dead.sent}
    assert entries[0].action == "replay all" and entries[0].outcome == "done"


def test_replay_all_of_one_rule_with_the_original_versions(http: TestClient, dead: Seeded) -> None:
    token = sign_in(http)
    other = add_dead(dead, "m-300", rule="notify-billing")
    confirm = http.get("/dead-letters/replay-all", params={"rule": "create-task"}).text
    assert "Replay 3 dead letter(s) of rule <code>create-task</code>?" in confirm
    assert other.id[:12] not in confirm
    form = {"csrf": token, "rule": "create-task", "count": "3", "version": "original"}
    assert http.post("/dead-letters/replay-all", data=form).status_code == 303
    assert {r for _, r in dead.sent} == {
        r.id for r in dead.ops.app.history.recent(dead.connection, rule="create-task")
    }
    assert dead.ops.app.dead_letters.count(dead.connection) == 1  # the other rule's
    assert all(
        r.rule_version == "v1" for r in dead.ops.app.history.recent(dead.connection, rule="create-task")
    )


def test_replay_all_refuses_a_stale_count(http: TestClient, dead: Seeded) -> None:
    token = sign_in(http)
    answer = http.post("/dead-letters/replay-all", data={"csrf": token, "count": "2"})
    assert answer.status_code == 409
    assert "there are 3 dead letter(s) now, not the 2 you confirmed" in answer.text
    assert dead.sent == [] and dead.ops.app.dead_letters.count(dead.connection) == 3


def test_replay_all_stopping_half_way_says_how_far_it_got(http: TestClient, dead: Seeded) -> None:
    token = sign_in(http)
    add_dead(dead, "m-299", rule="removed-rule")  # dead last: replayed after the others
    form = {"csrf": token, "count": "4", "version": "current"}
    answer = http.post("/dead-letters/replay-all", data=form)
    assert answer.status_code == 409
    assert "replayed 3 of 4, then:" in answer.text and "removed-rule" in answer.text
    entries = AuditLog(dead.store, dead.connection).recent()
    assert [(e.action, e.outcome) for e in entries].count(("replay", "done")) == 3 == len(dead.sent)
    assert entries[0].action == "replay all" and entries[0].outcome == "failed"


def test_a_viewer_cannot_replay_all(http: TestClient, dead: Seeded) -> None:
    token = sign_in(http, "victor")
    assert "Replay all" not in http.get("/dead-letters").text
    confirm = http.get("/dead-letters/replay-all").text
    assert "Only operators may replay." in confirm and "confirm-replay-all" not in confirm
    answer = http.post("/dead-letters/replay-all", data={"csrf": token, "count": "3"})
    assert answer.status_code == 403
    refused = http.post(f"/dead-letters/{dead.dead.id}/replay", data={"csrf": token, "version": "current"})
    assert refused.status_code == 403
    assert dead.sent == [] and dead.ops.app.dead_letters.count(dead.connection) == 3
    entries = AuditLog(dead.store, dead.connection).recent()
    assert [(e.action, e.outcome, e.user) for e in entries] == [
        ("replay", "refused", "victor"),
        ("replay all", "refused", "victor"),
    ]
