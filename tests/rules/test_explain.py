"""``ppw rules explain RESOURCE ID`` against the PracticePanther sandbox over real HTTP, with the
poller's snapshot in Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from tests.fixtures.client import SandboxAdmin
from tests.rules.conftest import BILLING_URL, PARTNERS_URL, RULES_DIR, fixed_clock, make_settings
from worker.cli import app
from worker.polling.cursors import write_snapshots
from worker.polling.snapshots import snapshotter_for
from worker.practicepanther import resources
from worker.practicepanther.client import PracticePantherClient
from worker.rules.engine import Engine
from worker.rules.explain import explain
from worker.rules.loader import load_rules
from worker.settings import Settings, get_settings
from worker.state import StateStore

runner = CliRunner()


@pytest.fixture
def cli_env(pp_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI reads its settings from the environment, as in production."""
    values = {
        "PPW_PP_BASE_URL": pp_settings.pp_base_url,
        "PPW_PP_CLIENT_ID": pp_settings.pp_client_id,
        "PPW_PP_CLIENT_SECRET": pp_settings.pp_client_secret.get_secret_value(),
        "PPW_PP_REDIRECT_URI": pp_settings.pp_redirect_uri,
        "PPW_STATE_URL": pp_settings.state_url,
        "PPW_CONNECTION_ID": pp_settings.connection_id,
        "PPW_RULES_DIR": str(RULES_DIR),
        "PPW_TIMEZONE": "America/New_York",
        "PPW_SLACK_WEBHOOKS__BILLING": BILLING_URL,
        "PPW_SLACK_WEBHOOKS__PARTNERS": PARTNERS_URL,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def open_matter(admin: SandboxAdmin) -> dict[str, Any]:
    account = admin.mutate(
        [{"op": "create", "resource": "accounts", "data": {"company_name": "Whitman Holdings"}}]
    )[0]
    matter: dict[str, Any] = admin.mutate(
        [
            {
                "op": "create",
                "resource": "matters",
                "data": {
                    "name": "Whitman v. Garner",
                    "status": "Open",
                    "account_ref": {"id": account["id"]},
                    "tags": ["Litigation"],
                },
            }
        ]
    )[0]
    return matter


def store_snapshot(store: StateStore, connection: str, record: dict[str, Any]) -> None:
    """The snapshot the poll actor stores: the whole record."""
    snapshot = snapshotter_for(store, connection, resources.get("matters")).take(record)
    with store.batch() as batch:
        write_snapshots(batch, connection, "matters", {record["id"]: snapshot})


def test_explain_a_closed_matter(
    pp_client: PracticePantherClient,
    pp_settings: Settings,
    redis_store: StateStore,
    sandbox_admin: SandboxAdmin,
    cli_env: None,
) -> None:
    matter = open_matter(sandbox_admin)
    store_snapshot(redis_store, pp_settings.connection_id, pp_client.get("matters", matter["id"]))
    sandbox_admin.mutate(
        [{"op": "update", "resource": "matters", "id": matter["id"], "data": {"status": "Closed"}}]
    )

    result = runner.invoke(app, ["rules", "explain", "matters", matter["id"]])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"matters {matter['id']}: next poll sees 'updated'" in out
    assert 'status: "Open" -> "Closed"' in out
    assert "✔ closed-matter-followup  fires" in out
    assert "✘ new-matter-intake  does not fire: event type: event is 'updated'; rule fires on created" in out
    assert "rule(s) watch other resources" in out
    assert out.rstrip().endswith("would fire: closed-matter-followup")

    as_json = runner.invoke(app, ["rules", "explain", "matters", matter["id"], "--format", "json", "-v"])
    report = json.loads(as_json.stdout)
    assert report["firing"] == ["closed-matter-followup"] and report["changes"]["status"]["new"] == "Closed"


def test_explain_without_a_snapshot_and_unchanged(
    pp_client: PracticePantherClient,
    pp_settings: Settings,
    redis_store: StateStore,
    sandbox_admin: SandboxAdmin,
    cli_env: None,
) -> None:
    matter = open_matter(sandbox_admin)
    fresh = runner.invoke(app, ["rules", "explain", "matters", matter["id"]])
    assert fresh.exit_code == 0, fresh.output
    assert "no snapshot stored: the next poll reports this record as created" in fresh.stdout
    assert "would fire: new-matter-intake" in fresh.stdout

    store_snapshot(redis_store, pp_settings.connection_id, pp_client.get("matters", matter["id"]))
    same = runner.invoke(app, ["rules", "explain", "matters", matter["id"]])
    assert "nothing fires now: the record has not changed since the last poll" in same.stdout


def test_explain_a_deleted_record(
    pp_client: PracticePantherClient,
    pp_settings: Settings,
    redis_store: StateStore,
    sandbox_admin: SandboxAdmin,
    cli_env: None,
) -> None:
    matter = open_matter(sandbox_admin)
    store_snapshot(redis_store, pp_settings.connection_id, pp_client.get("matters", matter["id"]))
    sandbox_admin.mutate([{"op": "delete", "resource": "matters", "id": matter["id"]}])
    result = runner.invoke(app, ["rules", "explain", "matters", matter["id"]])
    assert result.exit_code == 0, result.output
    assert "next poll sees 'deleted'" in result.stdout and "no rule would fire" in result.stdout


def test_explain_against_the_record_only() -> None:
    """Without a readable snapshot store, explain still answers from the record."""
    engine = Engine(
        load_rules([RULES_DIR], settings=make_settings()), settings=make_settings(), clock=fixed_clock
    )
    record = {"id": "m-9", "display_name": "X", "status": "Closed", "account_ref": {"id": "a"}, "tags": []}
    result = explain(engine, "matters", record, None, snapshot_available=False)
    assert result.notes[0].startswith("no stored snapshot could be read")
    verdict = {e.rule.id: e for e in result.evaluations}
    assert verdict["closed-matter-followup"].reason.startswith("changed: status did not change")


def test_explain_shows_when_a_for_duration_ends(
    pp_client: PracticePantherClient,
    pp_settings: Settings,
    redis_store: StateStore,
    sandbox_admin: SandboxAdmin,
    cli_env: None,
    tmp_path: Path,
) -> None:
    from worker.calendar import to_datetime

    (tmp_path / "pending.yaml").write_text(
        "- id: pending-too-long\n"
        '  trigger: {resource: matters, changed: status, to: Pending, for: "14 days"}\n'
        "  steps:\n    - type: log\n      with: {message: pending}\n"
    )
    matter = open_matter(sandbox_admin)
    store_snapshot(redis_store, pp_settings.connection_id, pp_client.get("matters", matter["id"]))
    sandbox_admin.mutate(
        [{"op": "update", "resource": "matters", "id": matter["id"], "data": {"status": "Pending"}}]
    )
    since = to_datetime(pp_client.get("matters", matter["id"])["updated_at"])
    ends = (since.astimezone(ZoneInfo("America/New_York")) + timedelta(days=14)).isoformat(timespec="minutes")
    result = runner.invoke(app, ["rules", "explain", "matters", matter["id"], "--rules", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"note: pending-too-long: duration ends {ends} (status = 'Pending' for 14 days" in result.stdout
    as_json = runner.invoke(
        app, ["rules", "explain", "matters", matter["id"], "--rules", str(tmp_path), "-f", "json"]
    )
    moment = json.loads(as_json.stdout)["moments"]["pending-too-long"]
    assert moment["kind"] == "for" and moment["at"][:16] == ends[:16] and moment["past"] is False


def test_explain_with_a_bad_holidays_setting_is_one_line(
    cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PPW_HOLIDAYS", "US-XX")
    get_settings.cache_clear()
    result = runner.invoke(app, ["rules", "explain", "matters", "m-1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: PPW_HOLIDAYS 'US-XX': US has no subdivision 'XX'")
