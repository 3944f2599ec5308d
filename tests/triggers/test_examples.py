"""The trigger examples in ``rules/triggers/``: clean, valid against the editor schema, and they say
what a firm would expect for their samples in ``tests/triggers/samples/``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr
from ruamel.yaml import YAML

from tests.triggers.conftest import REPO, SAMPLES, TRIGGER_RULES
from worker.rules.engine import Engine
from worker.rules.loader import load_rules
from worker.settings import Settings
from worker.triggers.preview import payload_preview, slot_preview

EXAMPLES = sorted(TRIGGER_RULES.glob("*.yaml"))
NOW = dt.datetime(2026, 4, 15, 14, 0, tzinfo=dt.UTC)


def _settings() -> Settings:
    return Settings(
        rules_dir=TRIGGER_RULES,
        timezone="America/New_York",
        webhook_secrets={"intake": SecretStr("whsec-example")},
        slack_webhooks={"billing": SecretStr("https://hooks.slack.com/services/T0/B0/example")},
        slack_bot_token=SecretStr("xoxb-example"),
    )


@pytest.fixture(scope="module")
def engine() -> Engine:
    ruleset = load_rules([TRIGGER_RULES], settings=_settings())
    assert [d.format() for d in ruleset.diagnostics] == []
    return Engine(ruleset, settings=_settings(), clock=lambda: NOW)


def _samples(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_have_a_sample_a_modeline_and_validate_against_the_schema(path: Path) -> None:
    assert path.read_text().startswith("# yaml-language-server: $schema=../schema.json")
    assert (SAMPLES / f"{path.stem}.json").exists()
    schema = json.loads((REPO / "rules" / "schema.json").read_text())
    data = YAML(typ="safe").load(path.read_text())
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)] == []


def test_intake_form_fires_on_a_valid_payload(engine: Engine) -> None:
    preview = payload_preview(engine.ruleset, _samples("intake-form"))
    assert preview.problems == []
    evaluation = engine.evaluate("intake-form", preview.event)
    assert evaluation.matched
    contact, _company, _colleague, _individual, matter, callback, slack = evaluation.steps
    assert contact.request == {
        "method": "GET",
        "url": "/api/v2/contacts",
        "params": {"$filter": "tolower(email) eq 'maya.oconnell@example.com'", "$top": 1},
    }
    assert (
        matter.params is not None
        and matter.params["data"]["name"] == "Commercial lease dispute with landlord"
    )
    assert callback.params == {
        "resource": "tasks",
        "data": {
            "subject": "Intake call: Maya O'Connell (Commercial lease dispute with landlord)",
            "matter_ref": {"id": "<steps.matter.id>"},
            "priority": "High",
            "status": "NotCompleted",
            "due_date": "2026-04-16T10:00:00-04:00",
            "notes": "Call +1 617 555 0199; run a conflict check before the call.",
        },
    }
    assert slack.params is not None and slack.params["channel"] == "#intake"


def test_intake_form_schema_turns_away_incomplete_payloads(engine: Engine) -> None:
    preview = payload_preview(engine.ruleset, {"first_name": "A", "email": "a@example.com"})
    assert any("'last_name' is a required property" in p for p in preview.problems)


def test_docket_digest_lists_todays_events(engine: Engine) -> None:
    loaded = engine.ruleset.get("docket-digest")
    assert loaded is not None
    preview = slot_preview(loaded, "2026-04-15T08:00", _settings(), results=_samples("docket-digest"))
    assert preview.slot == dt.datetime(2026, 4, 15, 11, 30, tzinfo=dt.UTC)
    assert preview.query is not None and preview.query.params == {
        "date_from": "2026-04-15",
        "date_to": "2026-04-15",
    }
    (step,) = engine.evaluate("docket-digest", preview.event).steps
    assert step.params is not None
    assert step.params["text"] == "Docket for Wednesday, April 15: 2 event(s)"
    assert step.params["blocks"][2]["elements"][0]["text"] == "2 event(s) from PracticePanther"
    empty = slot_preview(loaded, "2026-04-15T08:00", _settings(), results=[])
    (quiet,) = engine.evaluate("docket-digest", empty.event).steps
    assert (
        quiet.params is not None
        and quiet.params["blocks"][1]["text"]["text"] == "Nothing on the calendar today."
    )


def test_overdue_invoices_digest_totals_and_stays_quiet_when_nothing_is_overdue(engine: Engine) -> None:
    loaded = engine.ruleset.get("overdue-invoices")
    assert loaded is not None
    preview = slot_preview(loaded, "2026-04-22T12:00", _settings(), results=_samples("overdue-invoices"))
    assert preview.slot == dt.datetime(2026, 4, 20, 13, 0, tzinfo=dt.UTC)  # Monday 9:00 in New York
    assert preview.query is not None
    assert preview.query.filter == "total_outstanding gt 0 and due_date lt 2026-04-20T13:00:00Z"
    evaluation = engine.evaluate("overdue-invoices", preview.event)
    assert evaluation.matched
    (step,) = evaluation.steps
    assert step.params is not None
    assert step.params["text"] == "2 overdue invoice(s), $10,850.00 outstanding"
    lines = step.params["blocks"][1]["text"]["text"].splitlines()
    assert lines == [
        "• *$10,000.00* Whitman Holdings LLC, 1042 - Whitman Holdings v. Garner (due Mar 03)",
        "• *$850.00* Priya Natarajan (due Mar 31)",
    ]
    nothing = slot_preview(loaded, "2026-04-22T12:00", _settings(), results=[])
    assert not engine.evaluate("overdue-invoices", nothing.event).matched
