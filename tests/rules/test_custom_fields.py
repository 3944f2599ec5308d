"""Custom fields in rules: ``record.custom[...]`` typed, ``changed: custom.<label>`` with from/to,
``changes['custom.<label>']``, the explain tool's changes, ``rules check`` against the account's
definitions (and its export file, through the CLI), and renamed labels reported at refresh."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from tests.rules.conftest import make_settings
from tests.rules.test_engine import engine_for
from worker.cli import app
from worker.events import Change, Event
from worker.practicepanther.customfields import CustomField, Definitions
from worker.process.health import custom_fields_check
from worker.rules.checker import CheckConfig
from worker.rules.customlabels import CustomFieldsWatch, labels_used, read_report
from worker.rules.explain import synthesize_event
from worker.rules.loader import load_text
from worker.rules.ruleset import RuleSet
from worker.state.base import StateStore

STAGE = CustomField("f-stage", "Case Stage", "DropDownList", ("Intake", "Discovery", "Settlement"))
SOL = CustomField("f-sol", "Statute of Limitations", "Date")
PCT = CustomField("f-pct", "Contingency %", "Number")
CONFLICT = CustomField("f-conflict", "Conflict Check", "Checkbox")
OPPOSING = CustomField("f-opp", "Opposing Counsel", "Contact")
DEFINITIONS = Definitions(
    {"matter": (STAGE, SOL, PCT, CONFLICT, OPPOSING)}, {"matter": "2026-04-01T00:00:00Z"}
)


def value(field: CustomField, raw: Any) -> dict[str, Any]:
    ref = {"id": field.id, "label": field.label, "value_type": field.value_type}
    return {"custom_field_ref": ref, field.slot: raw}


def matter(stage: str, **extra: Any) -> dict[str, Any]:
    values = [
        value(STAGE, stage),
        value(SOL, "2027-03-01T00:00:00"),
        value(PCT, 33.0),
        value(CONFLICT, True),
        value(OPPOSING, {"id": "c-9", "display_name": "Jane Roe"}),
    ]
    return {"id": "m-1", "display_name": "1042 - Whitman", "custom_field_values": values, **extra}


def stage_moved(old: str, new: str) -> Event:
    return Event.build(
        type="updated",
        resource="matters",
        record_id="m-1",
        revision=f"r-{new}",
        record=matter(new),
        previous=matter(old),
        changes={"custom.Case Stage": Change(old=old, new=new)},
    )


RULES = """
- id: settled
  trigger: {resource: matters, on: updated, changed: custom.Case Stage, from: Discovery, to: Settlement}
  conditions:
    - record.custom['Conflict Check']
    - record.custom['Contingency %'] > 30
    - record.custom['Statute of Limitations'].year == 2027
    - changes['custom.Case Stage'].old == 'Discovery' and changes['custom.Case Stage'].old_known
  steps:
    - type: log
      with:
        message: >-
          {{ record.custom['Case Stage'] }} against {{ record.custom['Opposing Counsel'].display_name }},
          SOL {{ record.custom['Statute of Limitations'] | strftime('%Y-%m-%d') }}
- id: created-in-intake
  trigger: {resource: matters, on: created, changed: custom.Case Stage, to: Intake}
  steps: [{type: log, with: {message: new}}]
"""


def test_a_custom_field_transition_fires_and_templates_read_typed_values() -> None:
    engine = engine_for(RULES)
    assert [m.rule_id for m in engine.match(stage_moved("Discovery", "Settlement"))] == ["settled"]
    assert engine.match(stage_moved("Intake", "Settlement")) == []  # from: does not hold
    assert engine.match(stage_moved("Discovery", "Intake")) == []  # to: does not hold
    evaluation = engine.evaluate("settled", stage_moved("Discovery", "Settlement"))
    assert evaluation.matched, evaluation.reason
    message = evaluation.steps[0].params["message"]  # type: ignore[index]
    assert message == "Settlement against Jane Roe, SOL 2027-03-01"


def test_a_created_record_fires_on_its_custom_field_value() -> None:
    engine = engine_for(RULES)
    created = Event.build(
        type="created", resource="matters", record_id="m-1", revision="r1", record=matter("Intake")
    )
    assert [m.rule_id for m in engine.match(created)] == ["created-in-intake"]


def test_an_unknown_old_value_reads_as_unknown_not_as_empty() -> None:
    engine = engine_for(RULES)
    event = stage_moved("Discovery", "Settlement")
    event.changes["custom.Case Stage"] = Change(old=None, new="Settlement", old_known=False)
    assert engine.match(event) == []  # from: Discovery cannot hold of an unknown old value
    evaluation = engine.evaluate("settled", event)
    assert not evaluation.matched


def test_a_date_transition_matches_the_timestamp_it_stands_for() -> None:
    engine = engine_for(
        """
- id: sol-set
  trigger: {resource: matters, on: updated, changed: custom.Statute of Limitations, to: 2027-03-01}
  steps: [{type: log, with: {message: x}}]
"""
    )
    event = stage_moved("Discovery", "Settlement").model_copy(
        update={"changes": {"custom.Statute of Limitations": Change(old=None, new="2027-03-01T00:00:00")}}
    )
    assert [m.rule_id for m in engine.match(event)] == ["sol-set"]


def test_explain_names_custom_changes_as_the_poller_does() -> None:
    event = synthesize_event("matters", matter("Settlement"), matter("Discovery"))
    assert event.changes["custom.Case Stage"].old == "Discovery"
    assert event.changes["custom.Case Stage"].new == "Settlement"
    engine = engine_for(RULES)
    assert [m.rule_id for m in engine.match(event)] == ["settled"]


def check(text: str, definitions: Definitions | None = DEFINITIONS) -> list[str]:
    config = CheckConfig.from_settings(make_settings(), definitions)
    loaded = load_text(text, "rules/custom.yaml", config=config)
    return [d.format() for d in loaded.diagnostics]


def test_rules_check_catches_a_label_typo_with_a_suggestion_and_its_line() -> None:
    found = check(
        """id: typo
trigger: {resource: matters, changed: custom.Case Stag}
conditions:
  - record.custom['Contingency'] > 30
steps:
  - type: practicepanther.update
    with:
      resource: matters
      id: "{{ record.id }}"
      custom: {Conflict Chek: true}
"""
    )
    assert len(found) == 3, found
    assert "rules/custom.yaml:2:" in found[0] and "no custom field 'Case Stag' on matters" in found[0]
    assert "did you mean 'Case Stage'?" in found[0]
    assert "rules/custom.yaml:4:" in found[1] and "no custom field 'Contingency' on matters" in found[1]
    assert "did you mean 'Contingency %'?" in found[1]
    assert "rules/custom.yaml:10:" in found[2] and "did you mean 'Conflict Check'?" in found[2]


def test_rules_check_validates_dropdown_options_and_literal_values() -> None:
    found = check(
        """id: options
trigger: {resource: matters, changed: custom.Case Stage, to: Setlement}
steps:
  - type: practicepanther.update
    with:
      resource: matters
      id: "{{ record.id }}"
      custom: {Contingency %: lots, Case Stage: "{{ 'Intake' }}"}
"""
    )
    assert len(found) == 2, found
    assert "'Setlement' is not an option of the custom field 'Case Stage'" in found[0]
    assert "did you mean 'Settlement'?" in found[0]
    assert "custom field 'Contingency %' (Number) cannot hold 'lots'" in found[1]


def test_without_definitions_labels_are_not_checked_but_resources_are() -> None:
    rule = """id: nodefs
trigger: {resource: matters, changed: custom.Anything}
steps: [{type: create_task, with: {subject: x, custom: {Stage: y}}}]
"""
    found = check(rule, None)
    assert len(found) == 1 and "tasks have no custom fields" in found[0], found


def test_rules_check_reads_an_export_file(tmp_path: Path) -> None:
    exported = tmp_path / "custom-fields.json"
    DEFINITIONS.dump(exported)
    rule = tmp_path / "rules" / "typo.yaml"
    rule.parent.mkdir()
    rule.write_text(
        "id: typo\n"
        "trigger: {resource: matters, changed: custom.case stage}\n"
        "steps: [{type: log, with: {message: x}}]\n"
    )
    runner = CliRunner()
    failed = runner.invoke(app, ["rules", "check", str(rule), "--custom-fields", str(exported)])
    assert failed.exit_code == 1, failed.output
    assert "no custom field 'case stage' on matters" in failed.output
    assert "did you mean 'Case Stage'?" in failed.output
    rule.write_text(rule.read_text().replace("case stage", "Case Stage"))
    clean = runner.invoke(app, ["rules", "check", str(rule), "--custom-fields", str(exported)])
    assert clean.exit_code == 0, clean.output
    missing = runner.invoke(
        app, ["rules", "check", str(rule), "--custom-fields", str(tmp_path / "nope.json")]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output


RENAME_RULES = """
- id: settled
  trigger: {resource: matters, on: updated, changed: custom.Case Stage, to: Settlement}
  steps:
    - type: log
      with: {message: "{{ changes['custom.Referral Source'].new }}"}
- id: plain
  trigger: {resource: matters, on: updated, changed: status}
  steps: [{type: log, with: {message: x}}]
"""


def _gauge(resource: str) -> float | None:
    return REGISTRY.get_sample_value("ppw_custom_field_labels_missing", {"resource": resource})


def test_a_label_renamed_in_practicepanther_is_reported(
    redis_store: StateStore, connection_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    ruleset = RuleSet(rules=tuple(load_text(RENAME_RULES, "rules/settled.yaml").rules))
    assert labels_used(ruleset.rules[0]) == {("matters", "Case Stage"), ("matters", "Referral Source")}
    watch = CustomFieldsWatch(redis_store, connection_id, lambda: None, lambda: ruleset.rules)  # type: ignore[arg-type,return-value]
    readyz = custom_fields_check(lambda: read_report(redis_store, connection_id))
    assert readyz().detail == "definitions not refreshed yet"

    renamed = Definitions({"matter": (CustomField(STAGE.id, "Stage", "DropDownList", STAGE.options),)})
    with caplog.at_level("WARNING"):
        missing = watch.check(renamed)
    assert [(m.rule, m.label) for m in missing] == [("settled", "Case Stage"), ("settled", "Referral Source")]
    assert missing[0].hint == "did you mean 'Stage'?"
    assert "rule settled (rules/settled.yaml) uses custom field 'Case Stage' on matters" in caplog.text
    assert _gauge("matters") == 2
    result = readyz()
    assert result.ok  # a rename never takes the worker out of service
    assert "2 custom field label(s) no longer defined" in result.detail
    assert "settled: 'Case Stage' on matters (did you mean 'Stage'?)" in result.detail

    watch.check(
        DEFINITIONS.with_scope("matter", [STAGE, CustomField("f-r", "Referral Source", "TextBox")], "t")
    )
    assert _gauge("matters") == 0
    assert readyz().detail.startswith("every custom field label the rules use is defined")


def test_settings_default_refresh_cadence() -> None:
    assert make_settings().custom_fields_refresh == 3600.0
    assert dt.timedelta(seconds=make_settings(custom_fields_refresh=60).custom_fields_refresh).seconds == 60
