"""The engine: which rules an event fires, what each step renders, and what ``evaluate`` reports."""

from __future__ import annotations

from typing import Any

import pytest

from tests.rules.conftest import fixed_clock, make_settings
from worker.events import Change, Event
from worker.rules.engine import Engine
from worker.rules.explain import synthesize_event
from worker.rules.loader import load_text
from worker.rules.model import Rule
from worker.rules.ruleset import RuleSet
from worker.settings import Settings

MATTER: dict[str, Any] = {
    "id": "m-1",
    "display_name": "1042 - Whitman v. Garner",
    "status": "Closed",
    "number": 1042,
    "tags": ["Litigation"],
    "account_ref": {"id": "a-1", "display_name": "Whitman Holdings"},
}


def engine_for(text: str, settings: Settings | None = None) -> Engine:
    loaded = load_text(text, "test.yaml")
    assert [d.format() for d in loaded.diagnostics if d.is_error] == []
    ruleset = RuleSet(rules=tuple(loaded.rules))
    return Engine(ruleset, settings=settings or make_settings(), clock=fixed_clock)


def updated(changes: dict[str, tuple[Any, Any]], **record: Any) -> Event:
    current = {**MATTER, **record}
    previous = dict(current)
    for name, (old, _new) in changes.items():
        previous[name] = old
    return Event.build(
        type="updated",
        resource="matters",
        record_id=current["id"],
        revision="r2",
        record=current,
        previous=previous,
        changes={k: Change(old=o, new=n) for k, (o, n) in changes.items()},
    )


TRANSITION = """
- id: closed
  trigger: {resource: matters, on: updated, changed: status, from: [Open, Pending], to: Closed}
  steps: [{type: log, with: {message: "{{ record.display_name }} closed"}}]
- id: any-change
  trigger: {resource: matters, on: [created, updated]}
  steps: [{type: log, with: {message: x}}]
- id: tasks-only
  trigger: {resource: tasks}
  steps: [{type: log, with: {message: x}}]
- id: disabled
  enabled: false
  trigger: {resource: matters}
  steps: [{type: log, with: {message: x}}]
"""


def matched(engine: Engine, event: Event) -> list[str]:
    return [m.rule.id for m in engine.match(event)]


def test_rules_are_indexed_by_resource_and_event_type() -> None:
    engine = engine_for(TRANSITION)
    assert [r.id for r in engine.rules_for("matters", "updated")] == ["closed", "any-change"]
    assert [r.id for r in engine.rules_for("tasks", "created")] == ["tasks-only"]
    assert engine.rules_for("matters", "deleted") == ()


def test_transitions_follow_from_and_to() -> None:
    engine = engine_for(TRANSITION)
    assert matched(engine, updated({"status": ("Open", "Closed")})) == ["closed", "any-change"]
    assert matched(engine, updated({"status": ("Pending", "Closed")})) == ["closed", "any-change"]
    assert matched(engine, updated({"status": ("Archived", "Closed")})) == ["any-change"]
    assert matched(engine, updated({"status": ("Closed", "Open")}, status="Open")) == ["any-change"]
    assert matched(engine, updated({"notes": ("a", "b")})) == ["any-change"]


def test_created_and_deleted_events() -> None:
    engine = engine_for(
        TRANSITION
        + """
- id: gone
  trigger: {resource: matters, on: deleted}
  steps: [{type: log, with: {message: "{{ record.display_name }} deleted"}}]
- id: created-with-account
  trigger: {resource: matters, on: created, changed: account_ref, to: a-1}
  steps: [{type: log, with: {message: x}}]
"""
    )
    created = synthesize_event("matters", MATTER)
    assert created.type == "created"
    assert matched(engine, created) == ["any-change", "created-with-account"]
    deleted = synthesize_event("matters", None, MATTER)
    assert matched(engine, deleted) == ["gone"]


def test_own_changes_do_not_fire_unless_allowed() -> None:
    engine = engine_for(
        TRANSITION
        + """
- id: echo
  allow_own_changes: true
  trigger: {resource: matters, on: updated}
  steps: [{type: log, with: {message: x}}]
"""
    )
    event = updated({"status": ("Open", "Closed")}).model_copy(update={"origin": "ppw"})
    assert matched(engine, event) == ["echo"]
    evaluation = engine.evaluate("closed", event)
    assert not evaluation.matched and "made by ppw itself" in evaluation.reason


CONDITIONS = """
id: conditions
trigger: {resource: matters, on: updated}
conditions:
  - record.account_ref is not none
  - any:
      - "'vip' in (record.tags | map('lower') | list)"
      - record.number > 1000
  - not: [record.status == 'Archived']
steps: [{type: log, with: {message: x}}]
"""


def test_conditions_with_any_all_not() -> None:
    engine = engine_for(CONDITIONS)
    assert matched(engine, updated({"notes": (None, "x")})) == ["conditions"]
    assert matched(engine, updated({"notes": (None, "x")}, number=7)) == []
    assert matched(engine, updated({"notes": (None, "x")}, number=7, tags=["VIP"])) == ["conditions"]
    assert matched(engine, updated({"notes": (None, "x")}, status="Archived")) == []
    assert matched(engine, updated({"notes": (None, "x")}, account_ref=None)) == []


def test_match_reports_condition_values() -> None:
    engine = engine_for(CONDITIONS)
    (match,) = engine.match(updated({"notes": (None, "x")}))
    assert [c.passed for c in match.conditions] == [True, True, True]
    assert match.conditions[1].kind == "any"
    assert match.conditions[0].to_dict() == {
        "kind": "expr",
        "source": "record.account_ref is not none",
        "passed": True,
        "value": True,
    }


def test_a_condition_that_errors_does_not_fire_and_evaluate_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = engine_for(
        """
id: fragile
trigger: {resource: matters}
conditions: [record.account_ref.display_name.startswith('W')]
steps: [{type: log, with: {message: x}}]
"""
    )
    event = updated({"notes": (None, "x")}, account_ref=None)
    assert engine.match(event) == []
    assert "condition failed to evaluate" in caplog.text
    evaluation = engine.evaluate("fragile", event)
    assert not evaluation.matched
    assert evaluation.conditions[0].error and "condition" in evaluation.reason


def test_evaluate_lists_every_check_even_after_a_failure() -> None:
    engine = engine_for(TRANSITION)
    evaluation = engine.evaluate("closed", updated({"notes": ("a", "b")}))
    assert not evaluation.matched
    assert [(c.name, c.passed) for c in evaluation.checks] == [
        ("enabled", True),
        ("resource", True),
        ("event type", True),
        ("changed", False),
        ("from", False),
        ("to", True),
    ]
    assert evaluation.reason.startswith("changed: status did not change")
    disabled = engine.evaluate("disabled", updated({"notes": ("a", "b")}))
    assert disabled.checks[0].name == "enabled" and not disabled.matched


STEPS = """
id: steps
trigger: {resource: matters, on: updated}
steps:
  - id: task
    type: create_task
    with:
      subject: "Close {{ record.display_name }}"
      matter_ref: {id: "{{ record.id }}"}
      account_ref: "{{ record.account_ref }}"
      due_date: "{{ now() | add_business_days(2) | isoformat }}"
  - id: announce
    if: steps.task.id is defined
    type: slack.post
    with:
      webhook: billing
      text: "Task {{ steps.task.id }} for {{ record.number }}"
  - type: log
    if: record.number < 10
    with: {message: small}
"""


def test_render_step_gives_canonical_plain_parameters() -> None:
    engine = engine_for(STEPS)
    event = updated({"status": ("Open", "Closed")})
    variables = engine.context("steps", event)
    rendered = engine.render_step("steps", 0, variables)
    assert rendered == {
        "resource": "tasks",
        "data": {
            "subject": "Close 1042 - Whitman v. Garner",
            "matter_ref": {"id": "m-1"},
            "account_ref": {"id": "a-1", "display_name": "Whitman Holdings"},
            "due_date": "2026-04-17T10:00:00-04:00",
        },
    }
    assert type(rendered["data"]["account_ref"]) is dict  # plain data, not a template view


def test_later_steps_see_earlier_results() -> None:
    engine = engine_for(STEPS)
    event = updated({"status": ("Open", "Closed")})
    variables = engine.context("steps", event, {"task": {"id": "t-9", "subject": "x"}})
    assert engine.step_applies("steps", "announce", variables)
    assert engine.render_step("steps", 1, variables) == {"webhook": "billing", "text": "Task t-9 for 1042"}
    assert not engine.step_applies("steps", 2, variables)
    later = engine.with_step_result(engine.context("steps", event), "task", {"id": "t-10"})
    assert engine.render_step("steps", 1, later)["text"] == "Task t-10 for 1042"


def test_evaluate_previews_steps_with_placeholders_and_masks_secrets() -> None:
    engine = engine_for(STEPS)
    evaluation = engine.evaluate("steps", updated({"status": ("Open", "Closed")}))
    assert evaluation.matched
    first, second, third = evaluation.steps
    assert first.request == {
        "method": "POST",
        "url": "/api/v2/tasks",
        "json": first.params and first.params["data"],
    }
    assert second.runs and second.params == {"webhook": "billing", "text": "Task <steps.task.id> for 1042"}
    assert second.request is not None and second.request["url"] == "PPW_SLACK_WEBHOOKS__BILLING"
    assert "hooks.slack.com" not in repr(evaluation.to_dict())
    assert not third.runs and third.params is None


def test_engine_reuses_compiled_rules_of_unchanged_versions() -> None:
    first = engine_for(TRANSITION)
    loaded = load_text(TRANSITION.replace('closed"', 'shut"'), "test.yaml")
    second = Engine(RuleSet(rules=tuple(loaded.rules)), settings=make_settings(), previous=first)
    for rule_id in ("any-change", "tasks-only"):
        assert second._get(rule_id) is first._get(rule_id)
    assert second._get("closed") is not first._get("closed")


def test_rule_snapshot_round_trips_through_json() -> None:
    """Delivery stores ``model_dump(by_alias=True, exclude_unset=True)`` and validates it back."""
    loaded = load_text(STEPS + "rate_limit: 5/minute\nallow_own_changes: true\n", "test.yaml")
    rule = loaded.rules[0].rule
    snapshot = rule.model_dump(mode="json", by_alias=True, exclude_unset=True)
    again = Rule.model_validate(snapshot)
    assert again == rule
    assert again.rate_limit is not None and again.rate_limit.period_seconds == 60


def test_versions_change_with_the_definition_only() -> None:
    a = load_text(TRANSITION, "a.yaml").rules
    b = load_text("# a comment\n" + TRANSITION, "b.yaml").rules
    assert [r.version for r in a] == [r.version for r in b]
    c = load_text(TRANSITION.replace("to: Closed", "to: Archived"), "c.yaml").rules
    assert a[0].version != c[0].version and a[1].version == c[1].version
    assert RuleSet(rules=tuple(a)).version == RuleSet(rules=tuple(b)).version


def test_env_is_allow_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRM_NAME", "Reyes & Park")
    monkeypatch.setenv("PPW_PP_CLIENT_SECRET", "do-not-show-me")
    engine = engine_for(
        """
id: env
trigger: {resource: matters}
steps: [{type: log, with: {message: "{{ env.FIRM_NAME }}"}}]
"""
    )
    variables = engine.context("env", updated({"notes": ("a", "b")}))
    assert engine.render_step("env", 0, variables) == {"message": "Reyes & Park"}
    assert "PPW_PP_CLIENT_SECRET" not in variables["env"]


def test_watched_resources() -> None:
    engine = engine_for(
        TRANSITION
        + """
- id: reads-old-values
  trigger: {resource: matters, on: updated}
  conditions: ["changes.close_date is not none or previous['notes'] != record.notes"]
  steps: [{type: log, with: {message: "{{ previous.display_name }} -> {{ record.display_name }}"}}]
"""
    )
    assert engine.watched() == {
        "matters": ["closed", "any-change", "reads-old-values"],
        "tasks": ["tasks-only"],
    }
