"""``ppw rules check|schema|test`` as an ops person types them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.rules.conftest import BILLING_URL, BROKEN, PARTNERS_URL, RULES_DIR, SAMPLES
from worker.cli import app
from worker.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PPW_RULES_DIR", str(RULES_DIR))
    monkeypatch.setenv("PPW_TIMEZONE", "America/New_York")
    monkeypatch.setenv("PPW_SLACK_WEBHOOKS__BILLING", BILLING_URL)
    monkeypatch.setenv("PPW_SLACK_WEBHOOKS__PARTNERS", PARTNERS_URL)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_check_the_examples_is_clean() -> None:
    env = {
        "PPW_WEBHOOK_SECRETS__INTAKE": "s3cret",
        "PPW_SLACK_BOT_TOKEN": "xoxb-test",
        "PPW_SLACK_SIGNING_SECRET": "slack-signing-secret",
    }
    result = runner.invoke(app, ["rules", "check"], env=env)
    assert result.exit_code == 0, result.output
    assert "14 file(s), 14 rule(s) loaded: 0 error(s), 0 warning(s)" in result.output


def test_check_the_write_off_approval_example_names_the_settings_it_needs() -> None:
    example = str(RULES_DIR / "write-off-approval.yaml")
    result = runner.invoke(app, ["rules", "check", example], env={"PPW_SLACK_BOT_TOKEN": "xoxb-test"})
    assert result.exit_code == 0, result.output  # warnings only
    assert (
        "write-off-approval.yaml:19:5: warning: approval via slack needs PPW_SLACK_SIGNING_SECRET, "
        "which is not set here"
    ) in result.output
    assert "xoxb-test" not in result.output
    get_settings.cache_clear()
    configured = {"PPW_SLACK_BOT_TOKEN": "xoxb-test", "PPW_SLACK_SIGNING_SECRET": "signing"}
    clean = runner.invoke(app, ["rules", "check", example], env=configured)
    assert clean.exit_code == 0 and "0 error(s), 0 warning(s)" in clean.output, clean.output


def test_check_prints_compiler_style_errors_and_exits_1() -> None:
    result = runner.invoke(app, ["rules", "check", str(BROKEN / "fields-typos.yaml")])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(
        line.endswith(
            "fields-typos.yaml:14:14: error: unknown field 'stauts' on matters (hint: did you mean 'status'?)"
        )
        for line in lines
    ), result.stdout
    assert "error(s)" in result.stderr


def test_check_json_for_ci() -> None:
    result = runner.invoke(app, ["rules", "check", str(BROKEN), "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["rules"] == 0 and report["errors"] > 20
    first = report["diagnostics"][0]
    assert set(first) >= {"file", "line", "column", "message", "hint", "severity", "rule"}


def test_strict_turns_warnings_into_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PPW_SLACK_WEBHOOKS__PARTNERS")
    get_settings.cache_clear()
    relaxed = runner.invoke(app, ["rules", "check"])
    assert relaxed.exit_code == 0
    assert "warning: Slack webhook 'partners' is not configured here" in relaxed.stdout
    assert runner.invoke(app, ["rules", "check", "--strict"]).exit_code == 1


def test_schema_writes_and_checks(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    result = runner.invoke(app, ["rules", "schema", "--output", str(target)])
    assert result.exit_code == 0 and f"wrote {target}" in result.output
    assert json.loads(target.read_text())["title"] == "ppw rules"
    assert runner.invoke(app, ["rules", "schema", "--output", str(target), "--check"]).exit_code == 0
    target.write_text("{}\n")
    stale = runner.invoke(app, ["rules", "schema", "--output", str(target), "--check"])
    assert stale.exit_code == 1 and "out of date" in stale.output
    assert runner.invoke(app, ["rules", "schema", "--check"]).exit_code == 0  # the committed one


def test_test_shows_checks_values_and_payloads() -> None:
    result = runner.invoke(
        app,
        [
            "rules",
            "test",
            str(RULES_DIR / "matter-closed.yaml"),
            "--event",
            str(SAMPLES / "matter-closed.json"),
            "--now",
            "2026-04-15T14:00:00Z",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "✔ closed-matter-followup  fires" in out
    assert "✔ from: status was 'Open', rule wants 'Open'" in out
    assert "✔ record.account_ref is not none  -> true" in out
    assert "POST /api/v2/tasks" in out and '"due_date": "2026-04-22T10:00:00-04:00"' in out
    assert "POST PPW_SLACK_WEBHOOKS__BILLING" in out
    assert "closing task <steps.task.id>" in out
    assert BILLING_URL not in out and "billingsecretvalue" not in result.output


def test_test_with_records_and_json_output(tmp_path: Path) -> None:
    sample = json.loads((SAMPLES / "matter-closed.json").read_text())
    (tmp_path / "now.json").write_text(json.dumps(sample["record"]))
    (tmp_path / "before.json").write_text(json.dumps(sample["previous"]))
    result = runner.invoke(
        app,
        [
            "rules",
            "test",
            str(RULES_DIR),
            "--record",
            str(tmp_path / "now.json"),
            "--previous",
            str(tmp_path / "before.json"),
            "--resource",
            "matters",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["event"]["type"] == "updated" and set(report["event"]["changes"]) == {
        "status",
        "close_date",
    }
    assert report["matched"] == ["closed-matter-followup"]
    verdicts = {r["rule"]: r for r in report["rules"]}
    assert verdicts["new-matter-intake"]["reason"].startswith("event type:")
    assert verdicts["payment-received"]["reason"].startswith("resource:")


def test_test_own_change_does_not_fire() -> None:
    result = runner.invoke(
        app,
        [
            "rules",
            "test",
            str(RULES_DIR / "matter-closed.yaml"),
            "--event",
            str(SAMPLES / "matter-closed.json"),
            "--own-change",
        ],
    )
    assert result.exit_code == 0
    assert "✘ closed-matter-followup  does not fire: own change" in result.stdout


def test_test_argument_errors() -> None:
    rules = str(RULES_DIR)
    sample = str(SAMPLES / "matter-closed.json")
    both = runner.invoke(app, ["rules", "test", rules, "--event", sample, "--record", sample])
    assert both.exit_code == 2 and "exactly one of --event or --record" in both.output
    no_resource = runner.invoke(app, ["rules", "test", rules, "--record", sample])
    assert no_resource.exit_code == 2 and "--resource" in no_resource.output


def test_test_reports_broken_rules_and_exits_1(tmp_path: Path) -> None:
    shutil.copy(RULES_DIR / "payment-received.yaml", tmp_path)
    shutil.copy(BROKEN / "fields-typos.yaml", tmp_path)
    result = runner.invoke(
        app, ["rules", "test", str(tmp_path), "--event", str(SAMPLES / "payment-received.json")]
    )
    assert result.exit_code == 1
    assert "✔ payment-received  fires" in result.stdout
    assert "fields-typos.yaml:14:14: error" in result.stderr
