"""Batched delivery on real state and real brokers: a dispatch message names many events, a run
message many runs, and each stays exactly-once.

Dispatch and run work for a whole batch in a few state-store round trips; these tests pin what
that must not change (one run per event and rule, duplicates dropped, leases given back) and the
machinery around it (the run-batch time budget, the lease keeper, the sweeper's backlog check).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from benchmarks.instruments import CountingStore
from tests.fixtures.stubs import Recorded, Reply, StubServer
from worker.actions.services import Services
from worker.delivery.history import run_lease_key
from worker.delivery.options import DeliveryOptions
from worker.delivery.rulebook import EngineRuleBook
from worker.events import Event
from worker.process.broker import queue_backlog
from worker.process.runtime import Runtime, wait_until
from worker.rules.watcher import RuleRegistry
from worker.settings import Settings
from worker.state.base import StateStore, key
from worker.state.locks import Lease, keep_alive

RULES = """\
- id: announce
  trigger: {{resource: matters, on: created}}
  steps:
    - id: post
      type: http.request
      with: {{url: "{url}/hook", json: {{matter: "{{{{ record.id }}}}"}}}}
- id: also
  trigger: {{resource: matters, on: created}}
  mode: parallel
  steps:
    - type: log
      with: {{message: "new matter {{{{ record.id }}}}"}}
"""


def events(connection: str, count: int, start: int = 0) -> list[Event]:
    return [
        Event.build(
            type="created",
            resource="matters",
            record_id=f"m-{i}",
            revision=f"2026-04-06T10:00:00.{i:06d}",
            connection=connection,
            record={"id": f"m-{i}", "name": f"Matter {i}", "status": "Open"},
        )
        for i in range(start, start + count)
    ]


def _runtime_on(
    store: StateStore, stub_server: StubServer, tmp_path: Path, connection_id: str, options: DeliveryOptions
) -> Runtime:
    """A runtime with :data:`RULES` on ``store``, delivering to ``stub_server``."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(RULES.format(url=stub_server.url))
    settings = Settings(rules_dir=rules_dir, http_allowed_hosts=["127.0.0.1"], connection_id=connection_id)
    registry = RuleRegistry(settings=settings)
    registry.load()
    return Runtime.create(
        settings,
        store=store,
        rules=EngineRuleBook(lambda: registry.engine, settings),
        services=Services(settings, store),
        options=options,
        broker=StubBroker(),
        queue_prefix=f"t{connection_id[-8:]}",
    )


@pytest.fixture
def runtime(
    store: StateStore, stub_server: StubServer, tmp_path: Path, connection_id: str
) -> Iterator[Runtime]:
    options = DeliveryOptions(dispatch_batch=7, run_batch=4, run_lease=5.0)
    made = _runtime_on(store, stub_server, tmp_path, connection_id, options)
    made.broker.emit_after("process_boot")
    yield made
    made.close()


def test_one_dispatch_message_creates_every_run_of_its_batch_once(
    runtime: Runtime, connection_id: str
) -> None:
    batch = events(connection_id, 12)
    runtime.app.events.save_many(batch)
    sent: list[str] = []
    dispatcher = runtime.actors.dispatcher
    results = dispatcher.dispatch_many(connection_id, [e.id for e in batch], lambda _c, ids: sent.extend(ids))
    assert [r.event_id for r in results] == [e.id for e in batch]
    assert all(len(r.runs) == 2 for r in results)  # two rules each
    assert len(sent) == len(set(sent)) == 24
    assert runtime.app.events.pending(connection_id) == []

    again: list[str] = []
    repeated = dispatcher.dispatch_many(
        connection_id, [e.id for e in batch], lambda _c, ids: again.extend(ids)
    )
    assert all(r.duplicate for r in repeated) and again == []


def test_a_dispatch_that_stopped_half_way_sends_its_queued_runs_again(
    runtime: Runtime, connection_id: str
) -> None:
    [event] = events(connection_id, 1)
    runtime.app.events.save(event)
    dispatcher = runtime.actors.dispatcher
    first: list[str] = []
    dispatcher.dispatch_many(connection_id, [event.id], lambda _c, ids: first.extend(ids))
    runtime.app.store.delete(key(connection_id, "dispatched", event.id))  # as if it died before "done"
    second: list[str] = []
    [result] = dispatcher.dispatch_many(connection_id, [event.id], lambda _c, ids: second.extend(ids))
    assert sorted(second) == sorted(first)  # the same runs (still queued), not new ones
    assert not result.duplicate


def test_missing_and_duplicate_events_in_one_batch(runtime: Runtime, connection_id: str) -> None:
    known, gone = events(connection_id, 2)
    runtime.app.events.save(known)
    sent: list[str] = []
    results = runtime.actors.dispatcher.dispatch_many(
        connection_id, [known.id, gone.id, known.id], lambda _c, ids: sent.extend(ids)
    )
    assert [r.event_id for r in results] == [known.id, gone.id]  # one result per distinct id
    assert len(results[0].runs) == 2 and results[1].runs == []
    assert len(sent) == 2


def test_batches_flow_through_the_broker_and_leave_no_lease_behind(
    runtime: Runtime, stub_server: StubServer, connection_id: str
) -> None:
    batch = events(connection_id, 30)
    runtime.start_workers(4)
    runtime.actors.emit(batch)
    received = stub_server.wait_for(30, "/hook")
    assert sorted(r.json["matter"] for r in received) == sorted(e.record_id for e in batch)
    history = runtime.app.history
    assert wait_until(lambda: history.active(connection_id) == [], 20)
    runs = history.recent(connection_id, limit=100)
    assert len(runs) == 60 and {r.status for r in runs} == {"succeeded"}
    store = runtime.app.store
    leases = [run_lease_key(connection_id, r.id) for r in runs]
    assert store.get_many(leases) == [None] * len(leases)  # the last write gave each lease back
    assert list(store.scan(key(connection_id, "rule-record"))) == []
    assert list(store.scan(key(connection_id, "run-sent"))) == []  # picked up: none "on its way"


def test_a_slow_run_message_hands_its_remaining_runs_to_other_messages(
    runtime: Runtime, stub_server: StubServer, connection_id: str
) -> None:
    slow = runtime.app.options.with_(dispatch_batch=50, run_batch=50, run_batch_seconds=0.3)
    runtime.app.options = slow
    counted = _CountRunMessages()
    runtime.broker.add_middleware(counted)

    def answer_slowly(recorded: Recorded) -> Reply:
        time.sleep(0.2)
        return Reply(200, "ok")

    stub_server.route("/hook", answer_slowly)
    runtime.start_workers(4)
    runtime.actors.emit(events(connection_id, 10))
    stub_server.wait_for(10, "/hook", timeout=30)
    assert wait_until(lambda: runtime.app.history.active(connection_id) == [], 20)
    # the first message (all 20 runs) stopped after its budget and re-sent the rest one per message
    assert counted.sizes[0] == 20
    assert len(counted.sizes) > 2 and set(counted.sizes[1:]) == {1}


class _CountRunMessages(dramatiq.Middleware):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.actor_name == "ppw_run":
            self.sizes.append(len(message.args[1]))


def test_the_lease_keeper_renews_and_never_renews_after_the_block(
    store: StateStore, connection_id: str
) -> None:
    lease = Lease(store, key(connection_id, "kept"), ttl=0.45)
    assert lease.acquire()
    with keep_alive(lease):
        time.sleep(1.2)  # several ttls: only renewals keep it
        assert lease.held and store.get(lease.key) == lease.owner
    lease.release()
    time.sleep(0.4)  # a renewal now would take the lease again
    assert store.get(lease.key) is None


def test_queue_backlog_counts_waiting_and_delayed_messages(redis_url: str, connection_id: str) -> None:
    for broker in (StubBroker(), RedisBroker(url=redis_url, namespace=f"ppw-test-{connection_id}")):
        actor = dramatiq.actor(broker=broker, queue_name=f"q{connection_id[-6:]}", actor_name="noop")(
            lambda: None
        )
        try:
            assert queue_backlog(broker, actor.queue_name) == 0
            actor.send()
            actor.send_with_options(delay=60_000)
            assert queue_backlog(broker, actor.queue_name) == 2
            broker.flush_all()
            assert queue_backlog(broker, actor.queue_name) == 0
        finally:
            broker.flush_all()
            broker.close()


def test_messages_a_consumer_took_are_not_a_backlog(redis_url: str, connection_id: str) -> None:
    """A worker that fetched messages and died holds them until the broker's maintenance hands
    them on; the sweeper must not wait for that, so they do not count as waiting."""
    broker = RedisBroker(url=redis_url, namespace=f"ppw-test-{connection_id}")
    actor = dramatiq.actor(broker=broker, queue_name=f"q{connection_id[-6:]}", actor_name="noop")(
        lambda: None
    )
    try:
        actor.send()
        actor.send()
        assert queue_backlog(broker, actor.queue_name) == 2
        consumer = broker.consume(actor.queue_name, prefetch=2, timeout=100)
        assert next(consumer) is not None  # fetched both (prefetch), acknowledged neither
        assert queue_backlog(broker, actor.queue_name) == 0
        consumer.close()
    finally:
        broker.flush_all()
        broker.close()


def test_the_sweeper_leaves_events_alone_while_their_messages_wait(
    runtime: Runtime, connection_id: str
) -> None:
    batch = events(connection_id, 3)
    runtime.actors.emit(batch)  # stored and sent; no worker is consuming yet
    assert runtime.recover(events_older_than=0) == (0, 0)  # waiting in the queue, not lost
    runtime.broker.flush_all()  # the messages are lost (a dead-lettered dispatch, say)
    assert runtime.recover(events_older_than=0) == (3, 0)


def _dispatched(runtime: Runtime, connection_id: str, count: int) -> list[str]:
    """Store ``count`` new-matter events and dispatch them; the run ids dispatch sent."""
    batch = events(connection_id, count)
    runtime.app.events.save_many(batch)
    sent: list[str] = []
    runtime.actors.dispatcher.dispatch_many(
        connection_id, [e.id for e in batch], lambda _c, ids: sent.extend(ids)
    )
    return sent


def test_runs_handed_back_are_released_for_other_workers(runtime: Runtime, connection_id: str) -> None:
    sent = _dispatched(runtime, connection_id, 3)
    done = runtime.actors.runner.run_many(connection_id, sent, budget=0.0)
    assert [outcome.status for _, outcome in done.outcomes] == ["succeeded"]  # one always runs
    assert done.handed_back == sent[1:]
    store = runtime.app.store
    assert store.get_many([run_lease_key(connection_id, r) for r in sent]) == [None] * len(sent)
    assert list(store.scan(key(connection_id, "rule-record"))) == []  # turns taken early, given back
    rest = runtime.actors.runner.run_many(connection_id, done.handed_back)
    assert {outcome.status for _, outcome in rest.outcomes} == {"succeeded"} and rest.handed_back == []


def test_a_run_held_elsewhere_is_busy_and_the_others_still_run(runtime: Runtime, connection_id: str) -> None:
    sent = _dispatched(runtime, connection_id, 2)
    other = Lease(runtime.app.store, run_lease_key(connection_id, sent[0]), ttl=5)
    assert other.acquire()
    done = dict(runtime.actors.runner.run_many(connection_id, sent).outcomes)
    assert done[sent[0]].status == "busy" and done[sent[0]].requeue_after is not None
    assert all(done[r].status == "succeeded" for r in sent[1:])
    assert runtime.app.store.get(other.key) == other.owner  # another owner's lease is left alone


def test_a_run_message_writes_each_ending_with_the_next_runs_start(
    store: StateStore, stub_server: StubServer, tmp_path: Path, connection_id: str
) -> None:
    counting = CountingStore(store)
    runtime = _runtime_on(counting, stub_server, tmp_path, connection_id, DeliveryOptions(run_lease=5.0))
    try:
        sent = _dispatched(runtime, connection_id, 5)  # ten one-step runs: two rules, five events
        counting.calls.clear()
        done = runtime.actors.runner.run_many(connection_id, sent)
        assert {outcome.status for _, outcome in done.outcomes} == {"succeeded"}
        assert counting.calls["batch"] == len(sent) + 1  # a start each, and the last ending
        assert counting.calls["take_turns"] == 1  # the five queued runs' turns, asked at once
        assert len(stub_server.requests) == 5
        leases = [run_lease_key(connection_id, r) for r in sent]
        assert store.get_many(leases) == [None] * len(leases)
        assert list(store.scan(key(connection_id, "rule-record"))) == []
        assert list(store.scan(key(connection_id, "rule-queue"))) == []  # a finished run leaves its queue
        runs = [runtime.app.history.get(connection_id, r) for r in sent]
        assert all(run.status == "succeeded" and run.finished_at for run in runs)
    finally:
        runtime.close()


def test_a_later_run_for_the_same_record_finds_the_earlier_one_ended(
    runtime: Runtime, stub_server: StubServer, connection_id: str
) -> None:
    first, second = (
        Event.build(
            type="created",
            resource="matters",
            record_id="m-same",
            revision=f"2026-04-06T10:00:0{i}.000000",
            connection=connection_id,
            record={"id": "m-same", "name": "Same matter", "status": "Open"},
        )
        for i in range(2)
    )
    runtime.app.events.save_many([first, second])
    sent: list[str] = []
    runtime.actors.dispatcher.dispatch_many(
        connection_id, [first.id, second.id], lambda _c, ids: sent.extend(ids)
    )
    queued = [r for r in sent if runtime.app.history.get(connection_id, r).rule_id == "announce"]
    done = runtime.actors.runner.run_many(connection_id, queued)
    # mode queued: the second waits for the first's record lease, given back by the carried ending
    assert [outcome.status for _, outcome in done.outcomes] == ["succeeded", "succeeded"]
    assert [r.json for r in stub_server.requests] == [{"matter": "m-same"}] * 2


def test_a_queued_run_whose_record_is_busy_waits_and_the_others_still_run(
    runtime: Runtime, stub_server: StubServer, connection_id: str
) -> None:
    sent = _dispatched(runtime, connection_id, 3)
    history, store = runtime.app.history, runtime.app.store
    queued = [r for r in sent if history.get(connection_id, r).rule_id == "announce"]
    record = lambda matter: key(connection_id, "rule-record", "announce", "matters", matter)  # noqa: E731
    holder = Lease(store, record("m-0"), ttl=5, owner="a run finishing elsewhere")
    assert holder.acquire()
    gone = key(connection_id, "rule-queue", "announce", "matters", "m-1")
    store.zadd(gone, {"a run no longer recorded": 0.0})  # ahead of m-1's run: dropped when found
    done = dict(runtime.actors.runner.run_many(connection_id, queued).outcomes)
    assert done[queued[0]].status == "waiting" and done[queued[0]].requeue_after
    assert done[queued[1]].status == done[queued[2]].status == "succeeded"
    assert sorted(r.json["matter"] for r in stub_server.requests) == ["m-1", "m-2"]
    assert store.get(holder.key) == holder.owner  # another owner's lease is left alone
    assert store.get_many([record("m-1"), record("m-2")]) == [None, None]
    assert holder.release()
    again = runtime.actors.runner.run_many(connection_id, [queued[0]])
    assert [outcome.status for _, outcome in again.outcomes] == ["succeeded"]
    assert list(store.scan(key(connection_id, "rule-record"))) == []
