"""``ppw rules test --at`` and ``ppw rules explain`` show the moments time gives a rule: when a
date trigger fires for the record (date field, offset in business days, time of day, in the firm
zone), when a ``for:`` duration ends, when a ``wait`` step wakes; and a bad calendar setting is
one clear line, not a traceback. Run as an ops person types them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.rules.conftest import RULES_DIR
from worker.cli import app
from worker.settings import get_settings

runner = CliRunner()

DATE_RULE = """\
- id: due-reminder
  trigger: {resource: tasks, at: due_date, offset: "-1 business day", time: "09:00"}
  steps:
    - type: log
      with: {message: "due soon"}
"""

FOR_RULE = """\
- id: pending-too-long
  trigger: {resource: matters, changed: status, to: Pending, for: "14 days"}
  steps:
    - type: log
      with: {message: "pending too long"}
"""

WAIT_RULE = """\
- id: follow-up
  trigger: {resource: invoices, on: created}
  steps:
    - id: later
      type: wait
      with: {for: "3 business days", at: "09:00"}
    - type: log
      with: {message: "still unpaid"}
"""


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PPW_RULES_DIR", str(RULES_DIR))
    monkeypatch.setenv("PPW_TIMEZONE", "America/New_York")
    monkeypatch.setenv("PPW_HOLIDAYS", "US")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _files(tmp_path: Path, rule: str, record: dict[str, Any]) -> tuple[str, str]:
    (tmp_path / "rule.yaml").write_text(rule)
    (tmp_path / "record.json").write_text(json.dumps(record))
    return str(tmp_path / "rule.yaml"), str(tmp_path / "record.json")


def _test(*args: str) -> Any:
    get_settings.cache_clear()
    return runner.invoke(app, ["rules", "test", *args])


def test_a_date_trigger_shows_its_moment_skipping_a_holiday(tmp_path: Path) -> None:
    # due Tuesday 26 May 2026; the business day before is Friday the 22nd (Memorial Day is the 25th)
    task = {"id": "t-1", "subject": "File", "due_date": "2026-05-26T00:00:00", "status": "NotCompleted"}
    rule, record = _files(tmp_path, DATE_RULE, task)
    result = _test(rule, "--record", record, "--resource", "tasks", "--at", "2026-05-01T12:00")
    assert result.exit_code == 0, result.output
    assert "  moments\n    fires 2026-05-22T09:00-04:00 (due_date 2026-05-26, -1 business day, at 09:00, " \
        "America/New_York)\n" in result.stdout  # fmt: skip

    late = _test(rule, "--record", record, "--resource", "tasks", "--at", "2026-05-23T12:00", "-f", "json")
    [found] = json.loads(late.stdout)["rules"][0]["moments"]
    assert found["kind"] == "date" and found["at"] == "2026-05-22T09:00:00-04:00" and found["past"] is True
    assert "a moment past does not fire (PPW_TRIGGER_BACKFILL)" in found["detail"]


def test_a_date_trigger_without_its_date_says_so(tmp_path: Path) -> None:
    rule, record = _files(tmp_path, DATE_RULE, {"id": "t-2", "subject": "File", "due_date": None})
    result = _test(rule, "--record", record, "--resource", "tasks", "--at", "2026-05-01T12:00")
    assert result.exit_code == 0 and "fires: due_date is empty: nothing to fire" in result.stdout


def test_a_for_duration_shows_when_it_ends_from_updated_at(tmp_path: Path) -> None:
    # Pending since 10:00 EST on 2 March; 14 days of the firm's wall clock: 10:00 EDT on the 16th
    matter = {"id": "m-1", "name": "Smith", "status": "Pending", "updated_at": "2026-03-02T15:00:00"}
    rule, record = _files(tmp_path, FOR_RULE, matter)
    result = _test(rule, "--record", record, "--resource", "matters", "--at", "2026-03-05T12:00")
    assert result.exit_code == 0, result.output
    assert "duration ends 2026-03-16T10:00-04:00 (status = 'Pending' for 14 days, from " \
        "2026-03-02T15:00:00+00:00 (updated_at))" in result.stdout  # fmt: skip
    (tmp_path / "record.json").write_text(json.dumps({**matter, "status": "Open"}))
    other = _test(rule, "--record", record, "--resource", "matters", "--at", "2026-03-05T12:00")
    assert "duration ends: status is 'Open', not 'Pending': no duration runs" in other.stdout


def test_a_wait_step_shows_its_wake_moment_from_at(tmp_path: Path) -> None:
    rule, record = _files(tmp_path, WAIT_RULE, {"id": "i-1", "number": "INV-1"})
    # Friday 3 July 2026 (Independence Day observed) is not a business day: Mon 6, Tue 7, Wed 8
    result = _test(
        rule, "--record", record, "--resource", "invoices", "--type", "created", "--at", "2026-07-02T15:00"
    )
    assert result.exit_code == 0, result.output
    assert "wakes 2026-07-08T09:00-04:00 (step later: for 3 business days, at 09:00, if the run " \
        "reached it at 2026-07-02T15:00:00-04:00)" in result.stdout  # fmt: skip


def test_at_alone_still_needs_schedule_rules_and_bad_at_is_an_error(tmp_path: Path) -> None:
    rule, record = _files(tmp_path, DATE_RULE, {"id": "t-1", "due_date": "2026-05-26"})
    alone = _test(rule, "--at", "2026-05-01T12:00")
    assert alone.exit_code == 2 and "--at needs schedule rules" in alone.output
    bad = _test(rule, "--record", record, "--resource", "tasks", "--at", "next tuesday")
    assert bad.exit_code == 2 and "--at 'next tuesday' is not an ISO time" in bad.output


@pytest.mark.parametrize("command", [["check"], ["test", str(RULES_DIR / "task-due-reminder.yaml")]])
def test_a_bad_holidays_setting_is_one_clear_line(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PPW_HOLIDAYS", "XX")
    args = list(command)
    if command[0] == "test":
        _rule, record = _files(tmp_path, DATE_RULE, {"id": "t-1", "due_date": "2026-05-26"})
        args += ["--record", record, "--resource", "tasks"]
    get_settings.cache_clear()
    result = runner.invoke(app, ["rules", *args])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: PPW_HOLIDAYS 'XX': no country or market 'XX'")
    assert "expected a country code (ISO 3166)" in line and "US-FL" in line
