"""One bad rule never silences its neighbours: each rule of a file is loaded or rejected on its own,
and the error still says file:line:column and names the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rules.conftest import make_settings
from worker.events import Change, Event
from worker.rules.checker import CheckConfig
from worker.rules.engine import Engine
from worker.rules.loader import load_rules, load_text
from worker.rules.ruleset import RuleSet

THREE = """\
- id: first
  trigger: {resource: matters, on: updated}
  steps:
    - type: log
      with: {message: "one {{ record.status }}"}
- id: middle
  trigger: {resource: matters, on: updated}
  steps:
    - type: log
      with: {message: "two"}
- id: last
  trigger: {resource: matters, on: updated}
  steps:
    - type: log
      with: {message: "three"}
"""

EVENT = Event.build(
    type="updated",
    resource="matters",
    record_id="m-1",
    revision="r1",
    record={"id": "m-1", "status": "Closed"},
    changes={"status": Change(old="Open", new="Closed")},
)

BREAKAGES = {
    "unknown step type": (
        'type: log\n      with: {message: "two"}',
        'type: lgo\n      with: {message: "two"}',
        (9, 13),
        "unknown step type 'lgo'",
    ),
    "bad template": ('{message: "two"}', '{message: "two {{ record.status "}', (10, 23), "template syntax"),
    "wrong field": (
        '{message: "two"}',
        '{message: "two {{ record.stauts }}"}',
        (10, 38),
        "unknown field 'stauts' on matters",
    ),
}


def _config() -> CheckConfig:
    return CheckConfig.from_settings(make_settings())


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_middle_rule_broken_leaves_the_other_two_loaded(breakage: str) -> None:
    old, new, (line, column), message = BREAKAGES[breakage]
    loaded = load_text(THREE.replace(old, new, 1), "rules/x.yaml", config=_config())

    assert [r.id for r in loaded.rules] == ["first", "last"]
    (broken,) = loaded.broken
    (error,) = broken.errors
    assert broken.rule == "middle" and error.rule == "middle"
    assert (error.file, error.line, error.column) == ("rules/x.yaml", line, column)
    assert message in error.message
    assert broken.summary().startswith(f"rules/x.yaml:{line}:{column} (middle): ")
    assert [d for d in loaded.diagnostics if d.is_error] == [error]

    engine = Engine(RuleSet(rules=tuple(loaded.rules)), settings=make_settings())
    assert [m.rule.id for m in engine.match(EVENT)] == ["first", "last"], "the good rules still fire"


def test_a_duplicate_id_in_a_file_rejects_only_the_later_rule() -> None:
    text = THREE.replace("id: last", "id: first")
    loaded = load_text(text, "rules/x.yaml", config=_config())
    assert [r.id for r in loaded.rules] == ["first", "middle"]
    (broken,) = loaded.broken
    assert broken.rule == "first" and broken.location == "rules/x.yaml:11:7"
    assert "duplicate rule id 'first'" in broken.errors[0].message


def test_a_duplicate_id_across_files_rejects_only_the_later_rule(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(THREE)
    (tmp_path / "b.yaml").write_text(
        THREE.replace("id: first", "id: own-one").replace("id: last", "id: own-two")
    )
    ruleset = load_rules([tmp_path], settings=make_settings())
    assert [r.id for r in ruleset] == ["first", "middle", "last", "own-one", "own-two"]
    assert next(r for r in ruleset if r.id == "middle").file.endswith("a.yaml")
    (broken,) = ruleset.broken
    assert broken.rule == "middle" and broken.location.endswith("b.yaml:6:7")
    assert "duplicate rule id 'middle'" in broken.errors[0].message


def test_a_file_that_does_not_parse_is_one_broken_entry(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(THREE)
    (tmp_path / "b.yaml").write_text("- id: other\n  trigger: {resource: matters\n")
    ruleset = load_rules([tmp_path], settings=make_settings())
    assert [r.id for r in ruleset] == ["first", "middle", "last"]
    (broken,) = ruleset.broken
    assert broken.rule is None and "YAML syntax" in broken.errors[0].message
    assert broken.location.endswith("b.yaml:3:1")
    assert len(ruleset.files) == 2


def test_a_broken_rule_without_an_id_is_reported_too() -> None:
    text = THREE.replace("- id: middle\n", "- trigger_typo: 1\n")
    loaded = load_text(text, "rules/x.yaml", config=_config())
    assert [r.id for r in loaded.rules] == ["first", "last"]
    (broken,) = loaded.broken
    assert broken.rule is None and broken.location.startswith("rules/x.yaml:6:")
