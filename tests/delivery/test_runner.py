"""Dispatch and the runner on real state (both backends), with HTTP steps against a stub receiver.

No broker here: the dispatcher and runner are called the way the actors call them, so each
behaviour (resume after failure, rule snapshot, if:, dedupe, loop guard, breaker, modes, DLQ) is
checked directly. The broker paths are covered end to end in tests/e2e.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.fixtures.stubs import Reply, StubServer
from worker.actions.services import Services
from worker.delivery.app import DeliveryApp
from worker.delivery.dispatch import Dispatcher
from worker.delivery.ledger import RunKey
from worker.delivery.options import DeliveryOptions
from worker.delivery.rulebook import EngineRuleBook
from worker.delivery.runner import Outcome, Runner
from worker.events import Change, Event
from worker.rules.watcher import RuleRegistry
from worker.settings import Settings
from worker.state.base import StateStore, key
from worker.state.locks import Lease

RULE = """\
- id: notify
  trigger: {{resource: matters, on: updated}}
  mode: {mode}
  {extra}
  steps:
    - id: first
      type: http.request
      with: {{url: "{url}/a", json: {{name: "{{{{ record.name }}}}"}}, secret: intake}}
    - id: maybe
      if: "record.status == 'Closed'"
      type: log
      with: {{message: "closed {{{{ record.name }}}}"}}
    - id: second
      type: http.request
      {second_extra}
      with: {{url: "{url}/b", json: {{first: "{{{{ steps.first.status }}}}"}}}}
    - id: third
      type: log
      with: {{message: "after second"}}
"""


class Harness:
    def __init__(self, store: StateStore, stub: StubServer, rules_dir: Path, connection: str) -> None:
        self.store, self.stub, self.rules_dir, self.connection = store, stub, rules_dir, connection
        self.settings = Settings(
            rules_dir=rules_dir,
            http_allowed_hosts=["127.0.0.1"],
            webhook_secrets={"intake": SecretStr("intake-secret-value")},
            rule_burst_per_minute=50,
        )
        self.write()
        self.registry = RuleRegistry(settings=self.settings)
        self.registry.load()
        options = DeliveryOptions(
            max_attempts=3, retry_base=0.01, retry_max=0.05, run_lease=5, queued_wait=0.01
        )
        self.app = DeliveryApp.create(
            self.settings,
            store,
            EngineRuleBook(lambda: self.registry.engine, self.settings),
            services=Services(self.settings, store),
            options=options,
        )
        self.dispatcher = Dispatcher(self.app)
        self.runner = Runner(self.app)
        self.sent: list[str] = []

    def write(
        self, mode: str = "parallel", extra: str = "", url: str | None = None, second_extra: str = ""
    ) -> None:
        text = RULE.format(mode=mode, extra=extra, url=url or self.stub.url, second_extra=second_extra)
        (self.rules_dir / "notify.yaml").write_text(text)

    def reload(self, **kwargs: Any) -> None:
        self.write(**kwargs)
        self.registry.load()
        assert not self.registry.status()["errors"], self.registry.status()["errors"]

    def event(
        self, record_id: str = "m-1", status: str = "Closed", revision: str = "1", **fields: Any
    ) -> Event:
        ev = Event.build(
            type="updated",
            resource="matters",
            record_id=record_id,
            revision=f"2026-04-06T10:00:0{revision}Z",
            connection=self.connection,
            record={"id": record_id, "name": f"Matter {record_id}", "status": status},
            changes={"status": Change(old="Open", new=status)},
            **fields,
        )
        self.app.events.save(ev)
        return ev

    def dispatch(self, ev: Event) -> list[str]:
        [result] = self.dispatcher.dispatch_many(
            self.connection, [ev.id], lambda _c, ids: self.sent.extend(ids)
        )
        return result.runs

    def run(self, run_id: str) -> Outcome:
        return self.runner.run(self.connection, run_id)

    def run_to_end(self, run_id: str, limit: int = 10) -> Outcome:
        for _ in range(limit):
            outcome = self.run(run_id)
            if outcome.requeue_after is None:
                return outcome
        raise AssertionError(f"run {run_id} did not finish: {outcome}")


@pytest.fixture
def harness(
    store: StateStore, stub_server: StubServer, tmp_path: Path, connection_id: str
) -> Iterator[Harness]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    made = Harness(store, stub_server, rules_dir, connection_id)
    yield made
    made.app.close()


def test_a_run_does_its_steps_in_order_and_records_them(harness: Harness) -> None:
    [run_id] = harness.dispatch(harness.event())
    outcome = harness.run(run_id)
    assert outcome.status == "succeeded"
    a, b = harness.stub.received("/a"), harness.stub.received("/b")
    assert len(a) == 1 and a[0].json == {"name": "Matter m-1"}
    assert b[0].json == {"first": 200}  # a lone expression keeps its type
    run = harness.app.history.get(harness.connection, run_id)
    assert [(s.id, s.status) for s in run.steps] == [
        ("first", "done"),
        ("maybe", "done"),
        ("second", "done"),
        ("third", "done"),
    ]
    assert run.steps[1].condition is True
    # the signing secret is masked in the recorded request
    assert run.steps[0].request is not None
    assert run.steps[0].request["headers"]["X-PPW-Signature"] == "[redacted]"
    assert "intake-secret-value" not in run.model_dump_json()


def test_if_false_skips_the_step(harness: Harness) -> None:
    [run_id] = harness.dispatch(harness.event(status="Pending"))
    harness.run(run_id)
    run = harness.app.history.get(harness.connection, run_id)
    assert [s.status for s in run.steps] == ["done", "skipped", "done", "done"]
    assert run.steps[1].condition is False


def test_a_retry_resumes_after_the_last_finished_step_with_the_original_rule(harness: Harness) -> None:
    harness.stub.script("/b", Reply(503, "down", {"Retry-After": "0"}))
    [run_id] = harness.dispatch(harness.event())
    first = harness.run(run_id)
    assert first.status == "retrying" and first.requeue_after is not None
    retrying = harness.app.history.get(harness.connection, run_id)
    assert retrying.failed_step == "second" and "503" in (retrying.error or "")

    # the rule file is edited before the retry: the run keeps the version it started with
    harness.reload(url="http://127.0.0.1:9")
    second = harness.run(run_id)
    assert second.status == "succeeded"
    assert len(harness.stub.received("/a")) == 1  # step 1 not repeated
    assert len(harness.stub.received("/b")) == 2
    run = harness.app.history.get(harness.connection, run_id)
    assert run.attempts == 2 and run.rule_version == retrying.rule_version
    assert run.steps[0].reused and not run.steps[2].reused


def test_permanent_errors_dead_letter_and_exhausted_retries_too(harness: Harness) -> None:
    harness.stub.script("/b", Reply(422, {"error": "bad"}))
    [run_id] = harness.dispatch(harness.event())
    outcome = harness.run(run_id)
    assert outcome.status == "dead"
    [dead] = harness.app.dead_letters.entries(harness.connection)
    assert dead.failed_step == "second" and "422" in (dead.error or "") and dead.attempts == 1

    harness.stub.script("/b", *[Reply(500, "oops")] * 3)
    [other] = harness.dispatch(harness.event(record_id="m-2"))
    assert harness.run_to_end(other).status == "dead"
    gave_up = harness.app.history.get(harness.connection, other)
    assert gave_up.attempts == 3 and (gave_up.error or "").startswith("gave up after 3 attempts")


def test_a_dead_runs_ledger_outlives_the_retention(harness: Harness) -> None:
    """A replay months later must still know that the first step was done (and not repeat it)."""
    harness.stub.script("/b", Reply(422, {"error": "bad"}))
    [run_id] = harness.dispatch(harness.event())
    assert harness.run(run_id).status == "dead"
    run = harness.app.history.get(harness.connection, run_id)
    [first] = harness.app.ledger.keys(RunKey.of(run), ["first"])
    assert harness.store.get(first) is not None and harness.store.ttl(first) is None


def test_continue_on_error_lets_the_run_go_on(harness: Harness) -> None:
    harness.reload(second_extra="continue_on_error: true")
    harness.stub.script("/b", Reply(404, "no such hook"))
    [run_id] = harness.dispatch(harness.event())
    assert harness.run(run_id).status == "succeeded"
    run = harness.app.history.get(harness.connection, run_id)
    assert [s.status for s in run.steps] == ["done", "done", "errored", "done"]
    assert "404" in (run.steps[2].error or "")


def test_template_errors_are_permanent(harness: Harness) -> None:
    harness.reload(url="{{ record.name | int }}")  # renders to 0 -> not a URL after rendering
    [run_id] = harness.dispatch(harness.event())
    outcome = harness.run(run_id)
    assert outcome.status == "dead"
    assert outcome.run is not None and (outcome.run.error or "").startswith("step first")


def test_dispatch_dedupes_by_event_id(harness: Harness) -> None:
    ev = harness.event()
    assert len(harness.dispatch(ev)) == 1
    assert harness.dispatch(ev) == []
    assert len(harness.sent) == 1


def test_own_changes_do_not_fire_unless_the_rule_opts_in(harness: Harness) -> None:
    assert harness.dispatch(harness.event(origin="ppw")) == []
    harness.reload(extra="allow_own_changes: true")
    assert len(harness.dispatch(harness.event(origin="ppw", revision="2"))) == 1


def test_circuit_breaker_pauses_a_rule_for_one_record(harness: Harness) -> None:
    harness.reload(extra="rate_limit: 2/minute")
    fired = [harness.dispatch(harness.event(revision=str(n))) for n in range(4)]
    assert [len(f) for f in fired] == [1, 1, 0, 0]
    paused = harness.app.history.recent(harness.connection, status="paused")
    assert len(paused) == 2 and "circuit breaker" in (paused[0].reason or "")
    assert len(harness.dispatch(harness.event(record_id="m-2"))) == 1  # other records carry on


def test_mode_single_skips_while_another_run_holds_the_record(harness: Harness) -> None:
    harness.reload(mode="single")
    [run_id] = harness.dispatch(harness.event())
    other = Lease(
        harness.store, key(harness.connection, "rule-record", "notify", "matters", "m-1"), 5, owner="x"
    )
    assert other.acquire()
    assert harness.run(run_id).status == "skipped"
    run = harness.app.history.get(harness.connection, run_id)
    assert "mode single" in (run.reason or "") and harness.stub.received() == []


def test_mode_queued_runs_one_record_in_detection_order(harness: Harness) -> None:
    harness.reload(mode="queued")
    harness.stub.script("/b", Reply(503, "busy"))
    [first] = harness.dispatch(harness.event(revision="1"))
    [second] = harness.dispatch(harness.event(revision="2"))
    [elsewhere] = harness.dispatch(harness.event(record_id="m-9"))
    assert harness.run(first).status == "retrying"
    waiting = harness.run(second)
    assert waiting.status == "waiting" and waiting.requeue_after is not None
    assert harness.run(elsewhere).status == "succeeded"  # another record is not held up
    assert harness.run_to_end(first).status == "succeeded"
    assert harness.run_to_end(second).status == "succeeded"
    order = [r.json["name"] for r in harness.stub.received("/a")]
    assert order == ["Matter m-1", "Matter m-9", "Matter m-1"]


def test_a_finished_run_is_not_run_again(harness: Harness) -> None:
    [run_id] = harness.dispatch(harness.event())
    harness.run(run_id)
    assert harness.run(run_id).status == "already"
    assert len(harness.stub.received("/a")) == 1


def test_a_run_held_by_another_worker_waits(harness: Harness) -> None:
    [run_id] = harness.dispatch(harness.event())
    held = Lease(harness.store, key(harness.connection, "run-lease", run_id), 5)
    assert held.acquire()
    outcome = harness.run(run_id)
    assert outcome.status == "busy" and outcome.requeue_after is not None and outcome.requeue_after <= 5
    held.release()
    assert harness.run(run_id).status == "succeeded"
