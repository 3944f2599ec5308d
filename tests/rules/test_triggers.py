"""The one trigger evaluation: firing and explaining read the same verdict, so they agree."""

from __future__ import annotations

import pytest

from tests.rules.test_engine import MATTER, engine_for, updated
from worker.events import Event
from worker.rules.results import Check
from worker.rules.triggers import check_trigger

RULES = """
- id: closed
  trigger: {resource: matters, on: updated, changed: status, from: [Open, Pending], to: Closed}
  steps: [{type: log, with: {message: x}}]
- id: account
  trigger: {resource: matters, on: [created, updated, deleted], changed: account_ref, to: a-1}
  steps: [{type: log, with: {message: x}}]
- id: own
  trigger: {resource: matters, on: updated}
  allow_own_changes: true
  steps: [{type: log, with: {message: x}}]
- id: any-matter
  trigger: {resource: matters, on: [created, updated]}
  steps: [{type: log, with: {message: x}}]
- id: off
  enabled: false
  trigger: {resource: matters, on: updated}
  steps: [{type: log, with: {message: x}}]
- id: tasks
  trigger: {resource: tasks}
  steps: [{type: log, with: {message: x}}]
"""

EVENTS = [
    updated({"status": ("Open", "Closed")}),
    updated({"status": ("Closed", "Open")}, status="Open"),
    updated({"status": ("Draft", "Closed")}),
    updated({"tags": ([], ["Litigation"])}),
    updated({"status": ("Open", "Closed")}).model_copy(update={"origin": "ppw"}),
    Event.build(type="created", resource="matters", record_id="m-1", revision="r1", record=MATTER),
    Event.build(type="deleted", resource="matters", record_id="m-1", revision="r3", record=MATTER),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.type}-{','.join(e.changes)}-{e.origin}")
def test_firing_and_explaining_agree(event: Event) -> None:
    engine = engine_for(RULES)
    fired = {m.rule_id for m in engine.match(event)}
    for evaluation in engine.evaluate_all(event, steps=False):
        rule = evaluation.rule.rule
        fast, explained = check_trigger(rule, event, explain=False), check_trigger(rule, event, explain=True)
        assert fast.held == explained.held == (evaluation.rule.id in fired), evaluation.reason
        assert [c.name for c in evaluation.checks] == [c.name for c in explained.checks]
        if not fast.held:
            # firing names the first part that failed; the explanation lists it first among its failures
            assert fast.failed is not None and explained.failed is not None
            assert fast.failed.name == explained.failed.name


def test_verdict_lists_every_part_when_explained() -> None:
    engine = engine_for(RULES)
    event = updated({"status": ("Draft", "Open")}, status="Open")
    rule = next(r.rule for r in engine.ruleset if r.id == "closed")
    verdict = check_trigger(rule, event)
    assert not verdict.held
    assert [(c.name, c.passed) for c in verdict.checks] == [
        ("enabled", True),
        ("resource", True),
        ("event type", True),
        ("changed", True),
        ("from", False),
        ("to", False),
    ]
    assert verdict.checks[-1].detail == "status is 'Open', rule wants 'Closed'"
    assert check_trigger(rule, event, explain=False).checks == (Check("from", False),)
