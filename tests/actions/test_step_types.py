"""Step types are classes, and everything else reads their registry.

A step type defined only here (``toy.echo``) must load in a rule, pass ``ppw rules check`` (with its
result keys checked), appear in the editor schema and the docs' step table, and be run by the
runner for a real run: adding a step type is one module and nothing else. The committed docs table
must equal the generated one (as rules/schema.json must equal ``ppw rules schema``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.actions import base
from worker.actions.base import StepContext, StepResult, StepType
from worker.actions.params import Params
from worker.actions.services import Services
from worker.delivery.app import DeliveryApp
from worker.delivery.dispatch import Dispatcher
from worker.delivery.rulebook import EngineRuleBook
from worker.delivery.runner import Runner
from worker.events import Change, Event
from worker.rules import schema as rules_schema
from worker.rules.loader import load_text
from worker.rules.watcher import RuleRegistry
from worker.settings import Settings
from worker.state.base import StateStore

DOCS = Path(__file__).resolve().parents[2] / "docs" / "rules.md"

RULE = """\
- id: toy-rule
  trigger: {resource: matters, on: updated}
  steps:
    - id: echoed
      type: toy.echo
      with: {word: "{{ record.name }}"}
    - id: after
      type: log
      with: {message: "got {{ steps.echoed.echo }}"}
"""


class ToyParams(Params):
    """The toy's ``with:``."""

    word: str


@pytest.fixture
def toy() -> Iterator[list[tuple[Any, StepContext]]]:
    """Define ``toy.echo`` (defining the class registers it); remove it afterwards."""
    calls: list[tuple[Any, StepContext]] = []

    class ToyEcho(StepType):
        name = "toy.echo"
        params = ToyParams
        writes = False
        result_keys = frozenset({"echo"})
        result_doc = "`echo`, the word"

        def run(self, params: ToyParams, ctx: StepContext) -> StepResult:
            calls.append((params, ctx))
            return StepResult(output={"echo": params.word}, request={"word": params.word})

    try:
        yield calls
    finally:
        base.unregister("toy.echo")


def test_a_step_type_defined_elsewhere_loads_and_passes_rules_check(toy: list[Any]) -> None:
    loaded = load_text(RULE, "toy.yaml")
    assert loaded.diagnostics == []
    [rule] = loaded.rules
    step = rule.rule.steps[0]
    assert step.action == "toy.echo" and isinstance(step.params, ToyParams)


def test_rules_check_checks_the_result_keys_the_step_type_declares(toy: list[Any]) -> None:
    loaded = load_text(RULE.replace("steps.echoed.echo", "steps.echoed.nope"), "toy.yaml")
    assert loaded.diagnostics, "steps.echoed.nope is not a result key of toy.echo"
    assert any("nope" in d.message for d in loaded.diagnostics)


def test_rules_check_validates_the_step_types_parameters(toy: list[Any]) -> None:
    loaded = load_text(RULE.replace("{word:", "{wrd:"), "toy.yaml")
    assert any("wrd" in d.message for d in loaded.diagnostics)


def test_the_generated_schema_has_the_step_type(toy: list[Any]) -> None:
    defs = rules_schema.build_schema()["$defs"]
    assert defs["Step_toy_echo"]["properties"]["type"]["const"] == "toy.echo"
    assert "word" in defs["ToyParams"]["properties"]
    refs = [v["$ref"] for v in defs["Rule"]["properties"]["steps"]["items"]["oneOf"]]
    assert "#/$defs/Step_toy_echo" in refs


def test_the_docs_table_lists_the_step_type(toy: list[Any]) -> None:
    assert "| `toy.echo` | `word` | `echo`, the word |" in base.step_table().splitlines()


def test_removing_the_step_type_takes_it_out_of_the_rule_model(toy: list[Any]) -> None:
    base.unregister("toy.echo")
    assert any("toy.echo" in d.message for d in load_text(RULE, "toy.yaml").diagnostics)
    assert "Step_toy_echo" not in rules_schema.build_schema()["$defs"]


def test_a_step_type_name_is_registered_once(toy: list[Any]) -> None:
    with pytest.raises(ValueError, match=r"toy\.echo"):

        class Another(StepType):
            name = "toy.echo"
            params = ToyParams

    with pytest.raises(ValueError, match="create_task"):

        class Shadow(StepType):
            name = "toy.shadow"
            params = ToyParams
            shorthands = {"create_task": "tasks"}


def test_the_runner_runs_the_step_type(
    toy: list[tuple[Any, StepContext]], store: StateStore, tmp_path: Path, connection_id: str
) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "toy.yaml").write_text(RULE)
    settings = Settings(rules_dir=rules_dir)
    registry = RuleRegistry(settings=settings)
    registry.load()
    assert not registry.status()["errors"], registry.status()["errors"]
    app = DeliveryApp.create(
        settings, store, EngineRuleBook(lambda: registry.engine, settings), services=Services(settings, store)
    )
    try:
        event = Event.build(
            type="updated",
            resource="matters",
            record_id="m-1",
            revision="2026-04-06T10:00:01Z",
            connection=connection_id,
            record={"id": "m-1", "name": "Matter m-1", "status": "Closed"},
            changes={"status": Change(old="Open", new="Closed")},
        )
        app.events.save(event)
        [result] = Dispatcher(app).dispatch_many(connection_id, [event.id], lambda _c, _ids: None)
        [run_id] = result.runs
        outcome = Runner(app).run(connection_id, run_id)
        assert outcome.status == "succeeded", outcome
        [(params, ctx)] = toy
        assert params == ToyParams(word="Matter m-1")
        assert ctx.step_id == "echoed" and ctx.event.id == event.id and not ctx.dry_run
        run = app.history.get(connection_id, run_id)
        assert [(s.id, s.status) for s in run.steps] == [("echoed", "done"), ("after", "done")]
        assert run.steps[0].request == {"word": "Matter m-1"}
    finally:
        app.close()


def _committed_table() -> str:
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- step-table:.*?-->\n(.*?)<!-- /step-table -->", text, re.DOTALL)
    assert found, "docs/rules.md has no generated step table (<!-- step-table: ... -->)"
    return found.group(1)


def test_the_docs_step_table_is_generated_from_the_registry() -> None:
    assert _committed_table() == base.step_table(), (
        "docs/rules.md's step table is stale: paste worker.actions.base.step_table() between its markers"
    )


def test_every_step_type_says_what_it_is() -> None:
    for name, step in base.registry().items():
        assert step.name == name
        assert issubclass(step.params, Params), name
        assert type(step).run is not StepType.run, f"{name} has no run()"
