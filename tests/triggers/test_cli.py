"""``ppw rules check`` and ``ppw rules test`` for webhook and schedule rules, as typed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fixtures.client import connect
from tests.triggers.conftest import SAMPLES, TRIGGER_RULES
from worker.cli import app
from worker.settings import Settings, get_settings
from worker.state.base import StateStore

runner = CliRunner()


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PPW_TIMEZONE", "America/New_York")
    monkeypatch.setenv("PPW_WEBHOOK_SECRETS__INTAKE", "whsec-cli-test-secret")
    monkeypatch.setenv("PPW_SLACK_WEBHOOKS__BILLING", "https://hooks.slack.com/services/T0/B0/cli-test")
    monkeypatch.setenv("PPW_SLACK_BOT_TOKEN", "xoxb-cli-test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_trigger_examples_check_clean() -> None:
    result = runner.invoke(app, ["rules", "check", str(TRIGGER_RULES)])
    assert result.exit_code == 0, result.output
    assert "3 file(s), 3 rule(s) loaded: 0 error(s), 0 warning(s)" in result.output


BROKEN = """\
- id: bad-schedule
  trigger:
    schedule: "0 8 * * MONDAY-FRI"
    timezone: America/New_Yrok
  steps: [{type: log, with: {message: x}}]
- id: bad-query
  trigger:
    every: 1h
    query:
      resource: tasks
      filter: "stauts eq 'NotCompleted' and due_date lt {{ slot | odata }}"
      orderby: due
  steps:
    - type: log
      with: {message: "{{ record.subject }} {{ results[0].subjct }}"}
- id: bad-hook
  trigger:
    webhook: intake-form
    schema:
      type: object
      properties: {name: {type: string}}
      additionalProperties: false
  steps:
    - type: practicepanther.find
      with:
        resource: contacts
        filter: "email eq '{{ payload.nmae }}'"
    - type: log
      with: {message: "{{ results | length }} {{ slot }}"}
"""


def test_check_finds_cron_zone_filter_and_context_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = runner.invoke(app, ["rules", "check", str(path), "--format", "json"])
    assert result.exit_code == 1
    found = {(d["line"], d["message"]) for d in json.loads(result.stdout)["diagnostics"]}
    hints = " ".join(d["hint"] or "" for d in json.loads(result.stdout)["diagnostics"])
    messages = " | ".join(m for _, m in sorted(found))
    assert (3, "'0 8 * * MONDAY-FRI' is not a cron expression") in found
    assert any(line == 4 and "unknown time zone 'America/New_Yrok'" in m for line, m in found), messages
    assert "America/New_York" in hints
    assert any(line == 11 and "unknown field 'stauts' on tasks" in m for line, m in found), messages
    assert any(line == 12 and "unknown field 'due' on tasks in orderby" in m for line, m in found), messages
    assert any(line == 15 and "'record' is not available in a schedule rule" in m for line, m in found), (
        messages
    )
    assert any(line == 15 and "unknown field 'subjct' on tasks" in m for line, m in found), messages
    assert any(line == 27 and "payload has no field 'nmae'" in m for line, m in found), messages
    assert any(line == 27 and "goes into this filter unquoted" in m for line, m in found), messages
    assert any(line == 29 and "'results' is not available in a webhook rule" in m for line, m in found)
    assert any(line == 29 and "'slot' is not available in a webhook rule" in m for line, m in found)
    assert any(
        "PPW_WEBHOOK_SECRETS__INTAKE_FORM" in (d["hint"] or "")
        for d in json.loads(result.stdout)["diagnostics"]
    )


def test_rules_test_with_a_payload_shows_the_requests() -> None:
    result = runner.invoke(
        app,
        [
            "rules",
            "test",
            str(TRIGGER_RULES / "intake-form.yaml"),
            "--payload",
            str(SAMPLES / "intake-form.json"),
            "--now",
            "2026-04-15T14:00:00Z",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "event: webhook webhook:intake" in result.output
    assert "✔ intake-form  fires" in result.output
    assert '"$filter": "tolower(email) eq \'maya.oconnell@example.com\'"' in result.output
    assert '"due_date": "2026-04-16T10:00:00-04:00"' in result.output


def test_rules_test_with_an_invalid_payload_says_why_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"first_name": "A", "email": "not-an-email"}))
    result = runner.invoke(
        app, ["rules", "test", str(TRIGGER_RULES), "--payload", str(bad), "--hook", "intake"]
    )
    assert result.exit_code == 1
    assert "schema: intake-form: /: 'last_name' is a required property" in result.output
    assert "schema: intake-form: /email: 'not-an-email' is not a 'email'" in result.output
    unknown = runner.invoke(
        app, ["rules", "test", str(TRIGGER_RULES), "--payload", str(bad), "--hook", "nope"]
    )
    assert unknown.exit_code == 2 and "no rule listens on /hooks/nope" in unknown.output


def test_rules_test_at_a_time_with_given_results() -> None:
    result = runner.invoke(
        app,
        [
            "rules",
            "test",
            str(TRIGGER_RULES / "docket-digest.yaml"),
            "--at",
            "2026-04-15T09:10",
            "--results",
            str(SAMPLES / "docket-digest.json"),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["event"]["record_id"] == "2026-04-15T11:30:00Z"  # 7:30 in New York
    assert report["matched"] == ["docket-digest"]
    (step,) = report["rules"][0]["steps"]
    blocks = step["params"]["blocks"]
    assert blocks[0]["text"]["text"] == "Docket for Wednesday, April 15"
    assert blocks[1]["text"]["text"].splitlines() == [
        "• *09:30 AM* Hearing: motion to dismiss — 1042 - Whitman Holdings v. Garner "
        "(Suffolk Superior Court, Courtroom 6)",
        "• *All day* Filing deadline: opposition brief",
    ]
    assert "next: 2026-04-16T11:30:00+00:00" in report["notes"][0]


def test_rules_test_at_a_time_queries_practicepanther(
    pp_settings: Settings, redis_store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(pp_settings, redis_store)
    for name, value in {
        "PPW_PP_BASE_URL": pp_settings.pp_base_url,
        "PPW_PP_CLIENT_ID": pp_settings.pp_client_id,
        "PPW_PP_CLIENT_SECRET": pp_settings.pp_client_secret.get_secret_value(),
        "PPW_STATE_URL": pp_settings.state_url,
        "PPW_CONNECTION_ID": pp_settings.connection_id,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    result = runner.invoke(
        app,
        ["rules", "test", str(TRIGGER_RULES / "overdue-invoices.yaml"), "--at", "2026-04-20T09:00:00-04:00"],
    )
    assert result.exit_code == 0, result.output
    assert "event: schedule schedule:overdue-invoices 2026-04-20T13:00:00Z" in result.output
    assert "total_outstanding gt 0 and due_date lt 2026-04-20T13:00:00Z" in result.output
    count = int(result.output.split('"limit": 1000}: ')[1].split(" record(s)")[0])
    assert count > 0
    assert "✔ overdue-invoices  fires" in result.output
    assert f"{count} overdue invoice(s)" in result.output
