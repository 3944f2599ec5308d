"""Schedule triggers end to end: the runner fires slots into the real pipeline (Redis state, workers,
the sandbox for queries, a Slack stand-in) under a clock the test moves."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import Scenario
from tests.fixtures.client import SandboxAdmin
from worker.events import Event
from worker.rules.engine import Engine
from worker.triggers import ScheduleRunner, TriggerOptions
from worker.triggers.schedules import cursor_key

BILLING = "/hooks/T1/B1/billing-secret"

DIGEST = """\
- id: open-matters-digest
  trigger:
    every: 1h
    query:
      resource: matters
      filter: "status eq 'Open' and open_date lt {{ slot | odata }}"
      orderby: name
  steps:
    - type: slack.post
      with:
        webhook: billing
        text: >-
          {{ slot | isoformat }}: {{ results | length }} open matters,
          first {{ (results | first).name }}
"""


class FakeClock:
    """The wall clock as the test says it is."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


def _runner(
    scenario: Scenario,
    clock: FakeClock,
    *,
    leader: Callable[[], bool] = lambda: True,
    emit: Callable[[list[Event]], None] | None = None,
    **options: Any,
) -> ScheduleRunner:
    runtime = scenario.runtime
    assert runtime is not None and runtime.registry is not None
    registry = runtime.registry

    def engine() -> Engine:
        return registry.engine

    return ScheduleRunner(
        scenario.settings,
        scenario.store,
        emit or runtime.actors.emit,
        engine,
        lambda: scenario.client,
        leader,
        options=TriggerOptions(**options),
        clock=clock,
        events=runtime.app.events,
    )


def _statuses(outcomes: list[Any]) -> list[str]:
    return [o.status for o in outcomes]


def test_first_sight_primes_then_each_slot_fires_once_with_every_page_of_results(
    sandbox_factory: Callable[..., Any], pipeline: Callable[..., Scenario], connection_id: str
) -> None:
    # this sandbox serves at most 7 records a page: the query must page through all of them
    scenario = pipeline(DIGEST, server=sandbox_factory(seed=1, max_page_size=7))
    clock = FakeClock(dt.datetime(2026, 4, 15, 9, 40, tzinfo=dt.UTC))
    runner = _runner(scenario, clock)
    assert _statuses(runner.tick()) == ["primed"]
    assert runner.tick() == []  # nothing due before 10:00
    clock.advance(minutes=20, seconds=3)  # 10:00:03
    (fired,) = runner.tick()
    assert fired.status == "fired" and fired.slot == dt.datetime(2026, 4, 15, 10, 0, tzinfo=dt.UTC)
    assert runner.tick() == []  # the same slot never fires twice
    (post,) = scenario.slack.wait_for(1, BILLING)
    expected = list(
        scenario.client.list("matters", filter="status eq 'Open' and open_date lt 2026-04-15T10:00:00Z")
    )
    assert len(expected) > 7
    assert post.json["text"].startswith(f"2026-04-15T06:00:00-04:00: {len(expected)} open matters, first ")
    event = scenario.runtime.app.events.load(connection_id, fired.event_id)  # type: ignore[union-attr]
    assert {r["id"] for r in event.record["results"]} == {m["id"] for m in expected}
    assert scenario.store.get(cursor_key(connection_id, "open-matters-digest")) == "2026-04-15T10:00:00Z"


def test_only_the_leader_fires(pipeline: Callable[..., Scenario]) -> None:
    scenario = pipeline(DIGEST)
    clock = FakeClock(dt.datetime(2026, 4, 15, 9, 59, tzinfo=dt.UTC))
    follower = _runner(scenario, clock, leader=lambda: False)
    leader = _runner(scenario, clock)
    assert follower.tick() == [] and _statuses(leader.tick()) == ["primed"]
    clock.advance(minutes=2)
    assert follower.tick() == []
    assert _statuses(leader.tick()) == ["fired"]
    assert _statuses(_runner(scenario, clock).tick()) == []  # a new leader sees the slot done
    scenario.wait_runs(1)
    assert len(scenario.runs()) == 1


def test_a_leader_dying_between_queueing_and_its_cursor_does_not_post_twice(
    pipeline: Callable[..., Scenario],
) -> None:
    scenario = pipeline(DIGEST)
    runtime = scenario.runtime
    assert runtime is not None
    clock = FakeClock(dt.datetime(2026, 4, 15, 9, 59, tzinfo=dt.UTC))
    sent: list[str] = []

    def emit_then_die(events: list[Event]) -> None:
        runtime.actors.emit(events)  # the event is stored and its dispatch sent ...
        sent.extend(e.id for e in events)
        raise SystemExit("killed")  # ... and the process dies before advancing the cursor

    doomed = _runner(scenario, clock, emit=emit_then_die)
    doomed.tick()
    clock.advance(minutes=1, seconds=5)
    with contextlib.suppress(SystemExit):
        doomed.tick()
    successor = _runner(scenario, clock)
    (again,) = successor.tick()
    assert again.status == "fired" and again.event_id == sent[0]
    scenario.wait_runs(1)
    assert len(scenario.runs()) == 1
    assert len(scenario.slack.received(BILLING)) == 1


def test_missed_slots_run_once_within_the_grace_window_and_not_after(
    pipeline: Callable[..., Scenario],
) -> None:
    rules = """\
- id: quarter-hourly
  trigger: {every: 15m, grace: 30m}
  steps:
    - type: slack.post
      with: {webhook: billing, text: "tick {{ slot | utc | isoformat }}"}
"""
    scenario = pipeline(rules)
    clock = FakeClock(dt.datetime(2026, 4, 15, 10, 1, tzinfo=dt.UTC))
    runner = _runner(scenario, clock)
    runner.tick()
    clock.advance(minutes=50)  # down from 10:01 to 10:51: 10:15, 10:30 and 10:45 passed
    (late,) = runner.tick()
    assert late.status == "fired" and late.slot == dt.datetime(2026, 4, 15, 10, 45, tzinfo=dt.UTC)
    clock.advance(hours=2)  # 12:51: the 12:45 slot is 6 minutes late, within the grace
    assert _statuses(runner.tick()) == ["fired"]
    clock.advance(minutes=13)  # 13:04: 13:00 is due
    clock.advance(minutes=45)  # 13:49: ... but the scheduler was away; 13:45 is 4 minutes late
    assert _statuses(runner.tick()) == ["fired"]
    scenario.wait_runs(3)
    texts = sorted(r.json["text"] for r in scenario.slack.received(BILLING))
    assert texts == [
        "tick 2026-04-15T10:45:00+00:00",
        "tick 2026-04-15T12:45:00+00:00",
        "tick 2026-04-15T13:45:00+00:00",
    ]
    strict = """\
- id: strict
  trigger: {every: 15m, grace: 0}
  steps: [{type: log, with: {message: "{{ slot }}"}}]
"""
    scenario.write_rules(strict)
    assert scenario.runtime is not None and scenario.runtime.registry is not None
    scenario.runtime.registry.load()
    runner.tick()  # primes 'strict'
    clock.advance(minutes=20)
    assert _statuses(runner.tick()) == ["missed"]


def test_a_failing_query_leaves_the_slot_due_until_it_works(
    pipeline: Callable[..., Scenario], sandbox: Any
) -> None:
    scenario = pipeline(DIGEST, max_retries=0)
    admin = SandboxAdmin(sandbox.url)
    clock = FakeClock(dt.datetime(2026, 4, 15, 9, 59, tzinfo=dt.UTC))
    runner = _runner(scenario, clock)
    runner.tick()
    clock.advance(minutes=2)
    admin.faults(rate_5xx=1.0)
    try:
        (failed,) = runner.tick()
        assert failed.status == "failed"
        assert scenario.runs() == []
    finally:
        admin.faults(rate_5xx=0)
    (fired,) = runner.tick()
    assert fired.status == "fired"
    scenario.wait_runs(1)


def test_a_query_that_cannot_render_is_reported_once_not_retried(pipeline: Callable[..., Scenario]) -> None:
    rules = """\
- id: broken-query
  trigger:
    every: 1h
    query: {resource: matters, filter: "name eq {{ slot.weekday_name | odata }}"}
  steps: [{type: log, with: {message: "{{ results | length }}"}}]
"""
    scenario = pipeline(rules)
    clock = FakeClock(dt.datetime(2026, 4, 15, 9, 59, tzinfo=dt.UTC))
    runner = _runner(scenario, clock)
    runner.tick()
    clock.advance(minutes=2)
    (missed,) = runner.tick()
    assert missed.status == "missed" and "weekday_name" in missed.detail
    assert runner.tick() == []
    assert scenario.runs() == []
