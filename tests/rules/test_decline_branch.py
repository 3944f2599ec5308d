"""``on_decline:`` as a list of steps: flattened into guarded steps when the rule loads, checked at
the branch steps' own lines, shown by ``rules test``."""

from __future__ import annotations

from tests.rules.conftest import make_settings
from worker.events import Event
from worker.rules.engine import Engine
from worker.rules.loader import load_text
from worker.rules.model import Rule
from worker.rules.ruleset import RuleSet

RULE = """\
- id: write-off
  trigger: {resource: matters, on: updated}
  steps:
    - id: partner
      type: approval
      with:
        via: slack
        channel: "#partners"
        approvers: [U024BE7LH]
        text: "Write off {{ record.name }}?"
        on_decline:
          - id: sorry
            type: log
            with: {message: "declined by {{ steps.partner.by }}"}
          - id: second
            type: approval
            if: record.status == 'Open'
            with:
              via: slack
              channel: "#partners"
              approvers: [U024BE7LH]
              text: "Sure?"
              on_decline:
                - id: really
                  type: log
                  with: {message: "declined twice"}
    - id: noted
      type: log
      if: record.name != 'x'
      with: {message: "approved by {{ steps.partner.by }}"}
"""


def _rule(text: str = RULE) -> Rule:
    loaded = load_text(text)
    assert [d.format() for d in loaded.diagnostics] == []
    return loaded.rules[0].rule


def test_a_branch_becomes_guarded_steps_in_order() -> None:
    rule = _rule()
    assert [(s.id, s.if_) for s in rule.steps] == [
        ("partner", None),
        ("sorry", "steps.partner.declined is true"),
        ("second", "(steps.partner.declined is true) and (record.status == 'Open')"),
        ("really", "(steps.partner.declined is true) and (steps.second.declined is true)"),
        ("noted", "(steps.partner.declined is not true) and (record.name != 'x')"),
    ]
    # the approvals themselves go on after a decline: the guards choose
    assert [s.with_.on_decline for s in rule.steps if s.action == "approval"] == ["continue", "continue"]
    paths = [f.path for f in rule.flat_steps]
    assert paths[2] == ("steps", 0, "with", "on_decline", 1)
    assert paths[3] == ("steps", 0, "with", "on_decline", 1, "with", "on_decline", 0)
    assert rule.flat_steps[4].visible == ("partner",)  # the steps after it never see the branch


def test_the_flat_form_validates_back_to_itself() -> None:
    """A run's snapshot is the flat form: it must give the same steps when the run resumes."""
    rule = _rule()
    dumped = rule.model_dump(mode="json", by_alias=True, exclude_unset=True)
    again = Rule.model_validate(dumped)
    assert again.model_dump(mode="json", by_alias=True, exclude_unset=True) == dumped
    assert [s.if_ for s in again.steps] == [s.if_ for s in rule.steps]


def test_guards_hold_for_approved_declined_and_skipped_approvals() -> None:
    engine = Engine(RuleSet(rules=tuple(load_text(RULE).rules)), settings=make_settings())
    base = {"record": {"name": "y", "status": "Open"}}
    for result, runs in (
        ({"declined": True}, ["sorry", "second"]),
        ({"declined": False}, ["noted"]),
        ({}, ["noted"]),  # skipped: an empty result is not a decline
    ):
        variables = engine.with_step_result({**base, "steps": {}}, "partner", result)
        variables = engine.with_step_result(variables, "second", {})
        applies = [s.id for s in engine.ruleset.get("write-off").rule.steps[1:]]  # type: ignore[union-attr]
        held = [sid for sid in applies if engine.step_applies("write-off", sid, variables)]
        assert held == runs, result


def test_branch_step_ids_are_unique_across_the_rule() -> None:
    text = RULE.replace("          - id: sorry\n", "          - id: noted\n").replace(
        'steps.partner.by }}"}\n          - id: second', 'steps.partner.by }}"}\n          - id: second'
    )
    diagnostics = [d.format() for d in load_text(text, "w.yaml").diagnostics]
    assert diagnostics == [
        "w.yaml:27:11: error: step id 'noted' is used twice in this rule (hint: first used at line 12; "
        "step ids name results (steps.<id>) and must be unique, decline branches included)"
    ]


def test_a_branch_needs_the_approval_to_have_an_id() -> None:
    text = RULE.replace("    - id: partner\n", "    - name: partner\n")
    first = load_text(text, "w.yaml").diagnostics[0]
    assert first.format().startswith(
        "w.yaml:4:7: error: a approval step with on_decline: as a list of steps needs an id"
    )


def test_branch_steps_are_checked_at_their_own_lines() -> None:
    text = RULE.replace("declined by {{ steps.partner.by }}", "{{ steps.partner.bye }}").replace(
        '            with: {message: "declined twice"}', '            with: {mesage: "declined twice"}'
    )
    found = [d.format() for d in load_text(text, "w.yaml").diagnostics]
    assert "w.yaml:26:26: error: unknown key 'mesage' in the with: of a log step" in "\n".join(found)
    assert "w.yaml:14:47: error: no result key of step 'partner' 'bye' (hint: did you mean 'by'?)" in found


def test_a_later_step_cannot_read_a_branch_step() -> None:
    text = RULE.replace("approved by {{ steps.partner.by }}", "{{ steps.sorry.message }}")
    [diagnostic] = load_text(text, "w.yaml").diagnostics
    assert "no earlier step with id 'sorry'" in diagnostic.message and diagnostic.line == 30


def test_rules_test_shows_the_branch_steps() -> None:
    engine = Engine(RuleSet(rules=tuple(load_text(RULE).rules)), settings=make_settings())
    event = Event.build(
        type="updated", resource="matters", record_id="m1", revision="r", record={"name": "y"}
    )
    previews = engine.evaluate("write-off", event).steps
    assert [(p.id, p.runs) for p in previews] == [
        ("partner", True),
        ("sorry", False),  # a dry run's approval approves
        ("second", False),
        ("really", False),
        ("noted", True),
    ]
