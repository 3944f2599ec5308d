"""The example rules in ``rules/``: each is clean, fires on its sample event and sends what a firm
would expect; ``rules/schema.json`` is current and the examples validate against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from tests.rules.conftest import RULES_DIR, SAMPLES, fixed_clock, make_settings
from worker.events import Event
from worker.rules import schema as rules_schema
from worker.rules.engine import Engine, Evaluation
from worker.rules.explain import event_from_data
from worker.rules.loader import load_rules, load_text
from worker.rules.source import load_data

EXAMPLES = sorted(RULES_DIR.glob("*.yaml"))

#: The example from the issue, exactly as written there.
ISSUE_EXAMPLE = """\
# yaml-language-server: $schema=schema.json
- id: closed-matter-followup
  description: Closing task and a note to #billing when a matter closes
  trigger:
    resource: matters
    on: updated            # created | updated | deleted, or a list
    changed: status        # optional: a field or list of fields that must have changed
    from: Open             # optional transition, Home Assistant style
    to: Closed
  conditions:              # Jinja expressions, all must hold (Ansible `when:` style)
    - record.account_ref is not none
    - "'pro bono' not in (record.tags | map(attribute='name') | map('lower') | list)"
  steps:
    - id: task
      type: practicepanther.create
      with:
        resource: tasks
        data:
          subject: "Send closing letter: {{ record.display_name }}"
          matter_ref: {id: "{{ record.id }}"}
          status: NotCompleted
          due_date: "{{ now() | add_business_days(5) | isoformat }}"
    - type: slack.post
      with:
        webhook: billing   # secret URL resolved from PPW_SLACK_WEBHOOKS__BILLING
        text: "{{ record.display_name }} closed; closing task {{ steps.task.id }}"
"""


@pytest.fixture(scope="module")
def engine() -> Engine:
    ruleset = load_rules([RULES_DIR], settings=make_settings())
    assert [d.format() for d in ruleset.diagnostics] == []
    return Engine(ruleset, settings=make_settings(), clock=fixed_clock)


def sample(name: str) -> Event:
    data = load_data(SAMPLES / f"{name}.json")
    return event_from_data(data)


def fire(engine: Engine, name: str) -> Evaluation:
    event = sample(name)
    assert [m.rule.id for m in engine.match(event)] == [_rule_id(name)]
    evaluation = engine.evaluate(_rule_id(name), event)
    assert evaluation.matched, evaluation.reason
    assert all(step.error is None for step in evaluation.steps), [s.error for s in evaluation.steps]
    return evaluation


def _rule_id(sample_name: str) -> str:
    return {"matter-closed": "closed-matter-followup"}.get(sample_name, sample_name)


def test_every_example_has_a_sample_and_a_modeline() -> None:
    assert len(EXAMPLES) >= 5
    for path in EXAMPLES:
        assert path.read_text().startswith(rules_schema.MODELINE), path
        assert (SAMPLES / f"{path.stem}.json").exists(), path


def test_issue_example_works_as_written() -> None:
    loaded = load_text(ISSUE_EXAMPLE, "issue.yaml", config=None)
    errors = [d.format() for d in loaded.diagnostics if d.is_error]
    assert errors == []
    (rule,) = loaded.rules
    ruleset_engine = Engine(_ruleset(rule), settings=make_settings(), clock=fixed_clock)
    evaluation = ruleset_engine.evaluate(rule.id, sample("matter-closed"))
    assert evaluation.matched
    # The '#billing ...' part of the description is a YAML comment: the loader says so.
    assert any("YAML comment" in d.message for d in loaded.diagnostics)


def _ruleset(rule: Any) -> Any:
    from worker.rules.ruleset import RuleSet

    return RuleSet(rules=(rule,))


def test_matter_closed_creates_the_closing_task_and_tells_billing(engine: Engine) -> None:
    task, slack = fire(engine, "matter-closed").steps
    assert task.request == {
        "method": "POST",
        "url": "/api/v2/tasks",
        "json": {
            "subject": "Send closing letter: 1042 - Whitman Holdings v. Garner",
            "matter_ref": {"id": "0f6c1f4e-8a7b-4c1e-9a55-3b1d2c4e5f60"},
            "status": "NotCompleted",
            "due_date": "2026-04-22T10:00:00-04:00",
        },
    }
    assert slack.params == {
        "webhook": "billing",
        "text": "1042 - Whitman Holdings v. Garner closed; closing task <steps.task.id>",
    }


def test_pro_bono_matters_are_left_alone(engine: Engine) -> None:
    event = sample("matter-closed")
    record = {**event.record, "tags": [{"name": "Pro Bono"}, "Litigation"]}
    pro_bono = event.model_copy(update={"record": record})
    assert engine.match(pro_bono) == []
    assert "'pro bono' not in" in engine.evaluate("closed-matter-followup", pro_bono).reason


def test_new_matter_gets_an_intake_task_for_its_team(engine: Engine) -> None:
    (task,) = fire(engine, "new-matter-intake").steps
    data = task.params and task.params["data"]
    assert data is not None
    assert data["subject"] == "Intake: 1077 - Natarajan Estate Plan"
    assert [u["display_name"] for u in data["assigned_to_users"]] == ["Dana Reyes", "Leo Park"]
    assert data["account_ref"]["id"] == "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"
    assert "Opened April 13, 2026." in data["notes"]
    assert (data["priority"], data["status"], data["due_date"]) == (
        "High",
        "NotCompleted",
        "2026-04-17T10:00:00-04:00",
    )


def test_payment_goes_to_billing(engine: Engine) -> None:
    (slack,) = fire(engine, "payment-received").steps
    assert slack.params == {
        "webhook": "billing",
        "text": ":moneybag: Payment of $12,500.50 from Whitman Holdings LLC "
        "for 1042 - Whitman Holdings v. Garner (Apr 14).",
    }
    failed = sample("payment-received")
    failed = failed.model_copy(update={"record": {**failed.record, "status": "Failed"}})
    assert engine.match(failed) == []


def test_long_time_entry_goes_to_the_responsible_partner(engine: Engine) -> None:
    find, slack = fire(engine, "long-time-entry").steps
    assert find.request == {
        "method": "GET",
        "url": "/api/v2/matters",
        "params": {"$filter": "id eq 0f6c1f4e-8a7b-4c1e-9a55-3b1d2c4e5f60", "$top": 1},
    }
    assert slack.params is not None
    assert slack.params["text"] == (
        "<steps.matter.assigned_to_users[0].display_name>: Leo Park logged 9h 30m on "
        '1042 - Whitman Holdings v. Garner for Apr 14: "Deposition prep and attendance"'
    )
    # At run time the partner comes from the matter the find step returned.
    event = sample("long-time-entry")
    variables = engine.context(
        "long-time-entry", event, {"matter": {"assigned_to_users": [{"display_name": "Dana Reyes"}]}}
    )
    assert engine.render_step("long-time-entry", 1, variables)["text"].startswith(
        "Dana Reyes: Leo Park logged"
    )
    short = event.model_copy(update={"record": {**event.record, "hours": 7.5}})
    assert engine.match(short) == []


def test_contact_without_email_gets_an_intake_task(engine: Engine) -> None:
    (task,) = fire(engine, "contact-missing-email").steps
    assert task.params == {
        "resource": "tasks",
        "data": {
            "subject": "Complete intake: add an email for Priya Natarajan",
            "account_ref": {"id": "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"},
            "priority": "Medium",
            "due_date": "2026-04-16T10:00:00-04:00",
            "notes": "Priya Natarajan was added without an email address. Phone: +1 617 555 0142.",
        },
    }
    with_email = sample("contact-missing-email")
    with_email = with_email.model_copy(update={"record": {**with_email.record, "email": "p@example.com"}})
    assert engine.match(with_email) == []


def test_committed_schema_is_up_to_date() -> None:
    committed = (RULES_DIR / "schema.json").read_text(encoding="utf-8")
    assert committed == rules_schema.render(), "run `ppw rules schema` and commit rules/schema.json"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate_against_the_schema(path: Path) -> None:
    schema = json.loads((RULES_DIR / "schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
    assert errors == []


def test_schema_rejects_what_the_checker_rejects() -> None:
    validator = jsonschema.Draft202012Validator(rules_schema.build_schema())
    good = {
        "id": "x",
        "trigger": {"resource": "matters"},
        "steps": [{"type": "create_task", "with": {"subject": "s"}}],
    }
    assert list(validator.iter_errors(good)) == []
    for bad in (
        {**good, "tirgger": {}},
        {**good, "trigger": {"resource": "mattters"}},
        {**good, "steps": [{"type": "create_task", "with": {"subjct": "s"}}]},
        {**good, "steps": [{"type": "create_task", "with": {"subject": "s", "status": "Done"}}]},
        {**good, "steps": [{"type": "practicepanther.create", "with": {"resource": "tasks", "data": {}}}]},
        {**good, "steps": [{"type": "slack.pst", "with": {}}]},
        {**good, "mode": "sometimes"},
    ):
        assert list(validator.iter_errors(bad)), bad
    templated = {**good, "steps": [{"type": "create_task", "with": {"subject": "s", "status": "{{ x }}"}}]}
    assert list(validator.iter_errors(templated)) == []


def test_case_stage_settlement_makes_the_closing_checklist_and_tells_billing(engine: Engine) -> None:
    # the sample gives the record and its previous version only: the change of the custom field
    # is found the way the poller names it (custom.Case Stage)
    task, slack = fire(engine, "case-stage-settlement").steps
    assert task.request is not None and task.request["url"] == "/api/v2/tasks"
    assert task.request["json"]["subject"] == "Closing checklist: 1042 - Whitman Holdings v. Garner"
    assert "stage was Discovery" in task.request["json"]["notes"]
    assert slack.params == {
        "webhook": "billing",
        "text": "1042 - Whitman Holdings v. Garner moved to Settlement; "
        "closing checklist task <steps.checklist.id>",
    }


@pytest.mark.parametrize(
    "name",
    [
        "invoice-unpaid-follow-up",
        "task-due-reminder",
        "matter-pending-14-days",
    ],
)
def test_the_waiting_examples_fire_and_their_waits_render(engine: Engine, name: str) -> None:
    evaluation = fire(engine, name)
    wait = evaluation.steps[0]
    assert wait.action == "wait" and wait.error is None
    assert wait.params is not None and ("for" in wait.params or "until" in wait.params)


def test_the_statute_warning_is_a_date_trigger_60_days_ahead_at_nine(engine: Engine) -> None:
    # A date trigger, not a wait: a statute years ahead is past PPW_WAIT_MAX, an alarm is not.
    loaded = engine.ruleset.get("statute-of-limitations-warning")
    assert loaded is not None
    trigger = loaded.rule.trigger
    assert trigger.at == "custom.Statute of Limitations"
    assert (trigger.offset, trigger.time) == ("-60 days", "09:00")
    (task,) = fire(engine, "statute-of-limitations-warning").steps
    assert task.request is not None and task.request["json"]["priority"] == "High"
    assert task.request["json"]["subject"].startswith("Statute of limitations in 60 days: 1042")


def test_the_task_reminder_waits_for_three_business_days_before_the_new_due_date(engine: Engine) -> None:
    wait = fire(engine, "task-due-reminder").steps[0]
    assert wait.params == {
        "until": "2026-04-24T00:00:00",
        "offset": "-3 business days",
        "at": "09:00",
        "unless": "record.status == 'Completed'",
    }
