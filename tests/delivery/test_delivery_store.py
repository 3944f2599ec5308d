"""Ledger, run history, dead letters and the circuit breaker on both state backends."""

from __future__ import annotations

import time

import pytest

from worker.delivery.breaker import CircuitBreaker
from worker.delivery.deadletters import DeadLetters
from worker.delivery.history import EventSummary, Run, RunHistory, RunNotFound, StepTrace, run_id_for
from worker.delivery.ledger import Ledger, RunKey
from worker.events import Event
from worker.eventstore import EventNotFound, EventStore
from worker.state.base import StateStore


def _run(connection: str, event_id: str = "e1", rule_id: str = "r1", **kw: object) -> Run:
    return Run(
        id=run_id_for(event_id, rule_id),
        connection=connection,
        event_id=event_id,
        event=EventSummary(type="updated", resource="matters", record_id="m1", revision="1"),
        rule_id=rule_id,
        rule_version="v1",
        **kw,  # type: ignore[arg-type]
    )


def test_ledger_records_start_finish_and_uncertainty(store: StateStore, connection_id: str) -> None:
    ledger = Ledger(store, ttl=60)
    assert ledger.entries(RunKey(connection_id, "e1", "r1"), ["a", "b"]) == {}

    started = ledger.start(RunKey(connection_id, "e1", "r1"), "a", "v1", previous=None)
    assert started.status == "started" and started.attempts == 1 and not started.may_have_applied
    assert ledger.entry(RunKey(connection_id, "e1", "r1"), "a") == started
    assert ledger.entry(RunKey(connection_id, "e1", "r1"), "a").uncertain  # type: ignore[union-attr]

    # a second attempt after a crash (entry left at "started") carries the uncertainty
    again = ledger.start(RunKey(connection_id, "e1", "r1"), "a", "v1", previous=started)
    assert again.attempts == 2 and again.may_have_applied

    done = ledger.finish(RunKey(connection_id, "e1", "r1"), again, {"id": "t1"})
    assert done.finished and not done.uncertain and done.output == {"id": "t1"}
    ledger.skip(RunKey(connection_id, "e1", "r1"), "b", "v1", "if: false")
    entries = ledger.entries(RunKey(connection_id, "e1", "r1"), ["a", "b", "c"])
    assert set(entries) == {"a", "b"}
    assert entries["a"].rule_version == "v1" and entries["b"].status == "skipped"


def test_ledger_failure_that_may_have_applied_stays_uncertain(store: StateStore, connection_id: str) -> None:
    ledger = Ledger(store, ttl=60)
    entry = ledger.start(RunKey(connection_id, "e1", "r1"), "a", "v1", previous=None)
    failed = ledger.fail(RunKey(connection_id, "e1", "r1"), entry, "POST -> 500", may_have_applied=True)
    assert failed.uncertain
    clean = ledger.fail(
        RunKey(connection_id, "e2", "r1"),
        ledger.start(RunKey(connection_id, "e2", "r1"), "a", "v1", None),
        "400",
        may_have_applied=False,
    )
    assert not clean.uncertain


def test_ledger_entries_expire_with_retention(store: StateStore, connection_id: str) -> None:
    ledger = Ledger(store, ttl=0.3)
    ledger.start(RunKey(connection_id, "e1", "r1"), "a", "v1", previous=None)
    deadline = time.monotonic() + 5
    while ledger.entry(RunKey(connection_id, "e1", "r1"), "a") is not None:
        assert time.monotonic() < deadline, "ledger entry never expired"
        time.sleep(0.05)


def test_run_history_create_is_idempotent_and_lists_newest_first(
    store: StateStore, connection_id: str
) -> None:
    history = RunHistory(store, retention=3600)
    first = _run(connection_id, "e1", created_at=time.time() - 10)
    assert history.create(first)
    assert not history.create(_run(connection_id, "e1", status="running"))  # same id: kept as it was
    assert history.get(connection_id, first.id).status == "queued"

    second = _run(connection_id, "e2", rule_id="r2", created_at=time.time())
    history.create(second)
    second = second.model_copy(
        update={
            "status": "succeeded",
            "steps": [StepTrace(id="task", type="practicepanther.create", status="done")],
        }
    )
    history.save(second)

    assert [r.id for r in history.recent(connection_id)] == [second.id, first.id]
    assert [r.id for r in history.recent(connection_id, rule="r2")] == [second.id]
    assert [r.id for r in history.recent(connection_id, status="queued")] == [first.id]
    assert [r.id for r in history.recent(connection_id, since=time.time() - 5)] == [second.id]
    assert history.active(connection_id) == [first.id]
    assert history.resolve(connection_id, second.id[:8]).steps[0].id == "task"
    with pytest.raises(RunNotFound):
        history.get(connection_id, "nope")


def test_run_history_forgets_expired_runs(store: StateStore, connection_id: str) -> None:
    history = RunHistory(store, retention=0.3)
    run = _run(connection_id)
    history.create(run)
    assert history.find(connection_id, run.id) is not None
    deadline = time.monotonic() + 5
    while history.recent(connection_id):
        assert time.monotonic() < deadline, "run never expired"
        time.sleep(0.05)
    assert history.find(connection_id, run.id) is None


def test_dead_letters_keep_runs_until_removed(store: StateStore, connection_id: str) -> None:
    history = RunHistory(store, retention=0.3)
    dlq = DeadLetters(store, history)
    run = _run(connection_id, status="running")
    history.create(run)
    dead = dlq.add(run, "POST /api/v2/tasks -> 400: subject is required", failed_step="task")
    assert dead.status == "dead" and dead.failed_step == "task"
    time.sleep(0.5)  # past retention: a dead run is kept anyway
    [listed] = dlq.entries(connection_id)
    assert listed.id == run.id and listed.error is not None and "subject is required" in listed.error
    assert dlq.count(connection_id) == 1
    assert dlq.entries(connection_id, rule="other") == []
    assert dlq.remove(connection_id, run.id)
    assert dlq.entries(connection_id) == []


def test_event_store_round_trip_and_pending(store: StateStore, connection_id: str) -> None:
    events = EventStore(store, ttl=60)
    event = Event.build(
        type="updated",
        resource="matters",
        record_id="m1",
        revision="2026-01-01T00:00:00Z",
        connection=connection_id,
        record={"id": "m1", "status": "Closed"},
    )
    events.save(event)
    assert events.load(connection_id, event.id) == event
    assert events.pending(connection_id) == [event.id]
    events.dispatched(connection_id, event.id)
    assert events.pending(connection_id) == []
    with pytest.raises(EventNotFound):
        events.load(connection_id, "missing")


def test_circuit_breaker_pauses_one_rule_for_one_record(store: StateStore, connection_id: str) -> None:
    breaker = CircuitBreaker(store, limit=3, period=60, pause=30)
    verdicts = [breaker.check(connection_id, "r1", "matters", "m1") for _ in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert verdicts[3].tripped_now and not verdicts[4].tripped_now
    assert verdicts[4].paused_until is not None
    # other records and other rules are unaffected
    assert breaker.check(connection_id, "r1", "matters", "m2").allowed
    assert breaker.check(connection_id, "r2", "matters", "m1").allowed
    breaker.reset(connection_id, "r1", "matters", "m1")
    assert (
        breaker.check(connection_id, "r1", "matters", "m1").allowed is False
    )  # still over the limit this window
