"""The pruning pass (worker/delivery/retention.py) on both backends: index entries whose records
expired go, dead-lettered and waiting runs and held batches stay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.actions.services import Services
from worker.delivery import retention
from worker.delivery.app import DeliveryApp
from worker.delivery.history import EventSummary, Run, run_id_for
from worker.delivery.options import DeliveryOptions
from worker.events import Event
from worker.polling import held
from worker.settings import Settings
from worker.state.base import StateStore, key

RETENTION = 0.3
LONG_AGO = 3600.0  # index entries this old are past the retention


@pytest.fixture
def app(store: StateStore, tmp_path: Path) -> Iterator[DeliveryApp]:
    settings = Settings(rules_dir=tmp_path)
    made = DeliveryApp(
        settings=settings,
        store=store,
        rules=None,  # type: ignore[arg-type]  # the pass reads no rule
        services=Services(settings, store),
        options=DeliveryOptions(retention=RETENTION),
    )
    yield made
    made.close()


def _run(connection: str, event_id: str, **kw: object) -> Run:
    return Run(
        id=run_id_for(event_id, "r1"),
        connection=connection,
        event_id=event_id,
        event=EventSummary(type="updated", resource="matters", record_id="m1", revision="1"),
        rule_id="r1",
        rule_version="v1",
        created_at=time.time() - LONG_AGO,
        **kw,
    )


def _members(store: StateStore, connection: str, index: str) -> set[str]:
    return {m for m, _ in store.zrange_by_score(key(connection, index))}


def _expire() -> None:
    time.sleep(RETENTION + 0.4)


def test_runs_and_active_runs_whose_records_expired_are_pruned(app: DeliveryApp, connection_id: str) -> None:
    finished = _run(connection_id, "e-done", status="succeeded")
    queued = _run(connection_id, "e-queued")  # created long ago, never picked up, record expired
    assert app.history.create_many([finished, queued]) == {finished.id, queued.id}
    assert _members(app.store, connection_id, "runs-active") == {queued.id}
    _expire()
    fresh = _run(connection_id, "e-fresh")
    fresh = fresh.model_copy(update={"created_at": time.time()})
    app.history.create(fresh)

    pruned = retention.prune(app, connection_id)

    assert pruned.runs == 2 and pruned.runs_active == 1
    assert _members(app.store, connection_id, "runs") == {fresh.id}
    assert _members(app.store, connection_id, "runs-active") == {fresh.id}
    # the history's indexes by status, rule, resource and record forget them too
    for index in ("runs-by:rule:r1", "runs-by:resource:matters", "runs-by:record:m1"):
        assert _members(app.store, connection_id, index) == {fresh.id}
    assert _members(app.store, connection_id, "runs-by:status:succeeded") == set()
    assert app.store.hkeys(key(connection_id, "runs-attrs")) == [fresh.id]
    assert retention.prune(app, connection_id).total == 0  # nothing left to do


def test_dead_lettered_and_waiting_runs_survive_pruning(app: DeliveryApp, connection_id: str) -> None:
    dead = _run(connection_id, "e-dead", status="running")
    waiting = _run(connection_id, "e-wait", status="running")
    app.history.create_many([dead, waiting])
    app.dead_letters.add(dead, "POST -> 400", failed_step="first")
    due = time.time() + 86400
    asleep = waiting.model_copy(update={"status": "waiting", "wake_at": due, "waiting_step": "later"})
    with app.store.batch() as batch:  # as the runner parks a run at its wait step
        app.history.write(batch, asleep)
        app.timers.add(batch, asleep, due)
    _expire()

    pruned = retention.prune(app, connection_id)

    assert pruned.total == 0
    assert app.history.get(connection_id, dead.id).status == "dead"
    assert app.history.get(connection_id, waiting.id).status == "waiting"
    assert _members(app.store, connection_id, "runs") == {dead.id, waiting.id}
    assert [r.id for r in app.dead_letters.entries(connection_id)] == [dead.id]
    assert _members(app.store, connection_id, "timers") == {waiting.id}


def test_dead_letters_of_replayed_or_gone_runs_are_pruned(app: DeliveryApp, connection_id: str) -> None:
    kept = _run(connection_id, "e-kept", status="running")
    replayed = _run(connection_id, "e-replayed", status="running")
    app.history.create_many([kept, replayed])
    app.dead_letters.add(kept, "400", failed_step="first")
    app.dead_letters.add(replayed, "400", failed_step="first")
    app.history.save(replayed.model_copy(update={"status": "succeeded"}))  # replayed, done
    app.store.zadd(key(connection_id, "dlq"), {"gone-run": time.time()})

    assert retention.prune(app, connection_id).dlq == 2
    assert app.dead_letters.ids(connection_id) == [kept.id]


def test_pending_events_that_expired_are_pruned(app: DeliveryApp, connection_id: str) -> None:
    def event(record_id: str) -> Event:
        return Event.build(
            type="updated", resource="matters", record_id=record_id, revision="1", connection=connection_id
        )

    old, recent = event("m1"), event("m2")
    app.events.save(old)
    app.store.zadd(key(connection_id, "events-pending"), {old.id: time.time() - LONG_AGO})
    _expire()
    app.events.save(recent)

    assert retention.prune(app, connection_id).events_pending == 1
    assert app.events.pending(connection_id) == [recent.id]


def test_held_index_entries_of_gone_batches_are_pruned(app: DeliveryApp, connection_id: str) -> None:
    events = [
        Event.build(
            type="created", resource="matters", record_id=str(n), revision="1", connection=connection_id
        )
        for n in range(3)
    ]
    with app.store.batch() as batch:
        kept = held.hold(batch, connection_id, "matters", events, limit=2)
    app.store.zadd(key(connection_id, "held"), {"20260101T000000-matters-gone": time.time() - LONG_AGO})
    _expire()

    assert retention.prune(app, connection_id).held == 1
    assert _members(app.store, connection_id, "held") == {kept.id}
    assert [b.id for b in held.list_held(app.store, connection_id)] == [kept.id]


def test_the_scheduler_leader_runs_the_pass(app: DeliveryApp, connection_id: str) -> None:
    from types import SimpleNamespace

    from worker.process.run import poll_scheduler

    actors = SimpleNamespace(send_poll=print, send_reconcile=print, send_runs=print, emit=print)
    proxy = SimpleNamespace(alarms=app.alarms, store=app.store, rules=SimpleNamespace(versions=dict))
    runtime = SimpleNamespace(registry=None, app=proxy, actors=actors)
    settings = app.settings.model_copy(update={"connection_id": connection_id})
    scheduler = poll_scheduler(settings, runtime)  # type: ignore[arg-type]
    [job] = [j for j in scheduler._scheduler.get_jobs() if j.id == "prune"]
    assert job.trigger.interval.total_seconds() == retention.PRUNE_INTERVAL
    proxy.__dict__.update(history=app.history, events=app.events, dead_letters=app.dead_letters)
    app.store.zadd(key(connection_id, "runs"), {"expired-run": time.time() - LONG_AGO})
    scheduler._leader_until = time.monotonic() + 60  # as if it had won the lease
    job.func()
    assert _members(app.store, connection_id, "runs") == set()
