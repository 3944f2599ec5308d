"""A permanent error → the dead-letter store → the rule is fixed → a replay resumes and succeeds.

Driven through the CLI as an operator types it (``ppw dlq list``, ``ppw runs show``,
``ppw dlq replay``), on the embedded setup (the replay runs in the command's process) and on Redis
(the replay is queued and the running workers pick it up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from tests.e2e.conftest import CLOSED_MATTER_RULE, Scenario
from worker.cli import app
from worker.settings import get_settings

BROKEN = CLOSED_MATTER_RULE.replace("webhook: billing", 'channel: "#nowhere"')
FIXED = CLOSED_MATTER_RULE.replace("webhook: billing", 'channel: "#billing"')


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Scenario, list[str]], str]]:
    runner = CliRunner()

    def invoke(scenario: Scenario, args: list[str], exit_code: int = 0) -> str:
        for name, value in scenario.env().items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        result = runner.invoke(app, args)
        assert result.exit_code == exit_code, result.output
        return result.output

    yield invoke
    get_settings.cache_clear()


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_permanent_error_dead_letter_fix_and_replay(
    scenario_factory: Callable[..., Scenario],
    cli: Callable[..., str],
    kind: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if kind == "memory":
        broker_url, state_url = "memory://", f"sqlite:///{tmp_path_factory.mktemp('state')}/state.db"
    else:
        broker_url = state_url = redis_url
    scenario = scenario_factory(
        broker_url=broker_url, state_url=state_url, rules=BROKEN, slack_bot_token=SecretStr("xoxb-e2e-token")
    )
    scenario.start()
    scenario.poll()
    matter = scenario.close_matter()
    scenario.poll()

    [dead] = scenario.wait_runs(1, status="dead")
    assert dead.failed_step == "tell" and "channel_not_found" in (dead.error or "")
    assert [s.status for s in dead.steps] == ["done", "failed"]
    assert dead.attempts == 1  # permanent: not retried

    listing = cli(scenario, ["dlq", "list"])
    assert dead.id[:12] in listing and "channel_not_found" in listing
    detail = cli(scenario, ["runs", "show", dead.id[:10]])
    assert "closed-matter-followup" in detail and "task [practicepanther.create] done" in detail
    assert "xoxb-e2e-token" not in detail + listing

    scenario.write_rules(FIXED)
    if kind == "redis":  # the running workers pick up the fixed rule only via the replay's snapshot
        output = cli(scenario, ["dlq", "replay", dead.id, "--with-current-rule"])
        assert "queued on the broker" in output
        scenario.wait_runs(1, status="succeeded")
    else:
        output = cli(scenario, ["dlq", "replay", dead.id, "--with-current-rule"])
        assert "succeeded" in output

    [run] = scenario.runs()
    assert run.status == "succeeded" and run.replays == 1
    assert run.rule_version != dead.rule_version
    # the task from the first attempt was not created again
    closing = [t for t in scenario.tasks_for(matter["id"]) if t["subject"].startswith("Send closing letter")]
    assert len(closing) == 1
    nowhere, posted = scenario.slack.received("/api/chat.postMessage")
    assert nowhere.json["channel"] == "#nowhere"
    assert posted.json["channel"] == "#billing" and closing[0]["id"] in posted.json["text"]
    assert cli(scenario, ["dlq", "list"]).startswith("the dead-letter store is empty")
    assert cli(scenario, ["dlq", "replay", "--all"]).startswith("nothing to replay")


def test_replay_refuses_runs_that_are_not_dead(
    scenario_factory: Callable[..., Scenario],
    cli: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    scenario = scenario_factory(
        broker_url="memory://", state_url=f"sqlite:///{tmp_path_factory.mktemp('s')}/s.db"
    )
    scenario.start()
    scenario.poll()
    scenario.close_matter()
    scenario.poll()
    [run] = scenario.wait_runs(1)
    output = cli(scenario, ["dlq", "replay", run.id], exit_code=1)
    assert "not dead" in output
    assert "succeeded" in cli(scenario, ["runs", "list", "--status", "succeeded"])
    cli(scenario, ["runs", "list", "--status", "bogus"], exit_code=1)
