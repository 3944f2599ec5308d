"""The approval endpoints as a running worker mounts them (``webhook_routes_for``): workers on the
broker, the timer pump sending run messages through the actors, the HTTP server taking a signed
Slack click, and the run resuming on a worker thread; and the endpoints refusing what they must
when the deployment is not set up for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr

from tests.e2e.conftest import FAST, Scenario
from tests.fixtures.stubs import StubServer
from worker.actions.signing import sign
from worker.delivery.timers import TimerPump
from worker.process.health import HealthServer
from worker.process.triggers import webhook_routes_for
from worker.sandbox import SandboxServer
from worker.triggers.approvals import slack_signature

SECRET = "whsec-test-0123456789abcdef"
SIGNING = "slack-signing-secret-0123456789"
PARTNER = "UPARTNER1"

RULE = f"""\
- id: retainer-refund
  trigger: {{webhook: refunds}}
  steps:
    - id: ok
      type: approval
      with:
        via: slack
        channel: "#billing"
        approvers: [{PARTNER}]
        text: "Refund {{{{ payload.amount }}}} to {{{{ payload.client }}}}?"
        timeout: "1 day"
    - type: slack.post
      with:
        webhook: billing
        text: "Refund {{{{ payload.client }}}} {{{{ steps.ok.decision }}}} by {{{{ steps.ok.by }}}}"
"""


class Worker:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.runtime = scenario.start(threads=2)
        routes = webhook_routes_for(scenario.settings, self.runtime)
        self.server = HealthServer(scenario.settings, {}, routes=routes, host="127.0.0.1", port=0).start()
        self.http = httpx.Client(base_url=self.server.url, timeout=20)
        app = self.runtime.app
        self.pump = TimerPump(app.store, scenario.connection, self.runtime.actors.send_runs)

    def click(self, value: str, user: str = PARTNER, secret: str = SIGNING) -> httpx.Response:
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": "pat"},
            "actions": [{"action_id": "ppw_approve", "value": value}],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": slack_signature(secret, stamp, body),
        }
        return self.http.post("/slack/interactivity", content=body, headers=headers)

    def close(self) -> None:
        self.http.close()
        self.server.stop()


def _scenario(
    sandbox: SandboxServer,
    slack: StubServer,
    tmp_path: Path,
    connection_id: str,
    redis_url: str,
    **settings: Any,
) -> Scenario:
    """The refunds hook and its approval rule on Redis state and the memory broker; ``settings``
    add the Slack secrets (or leave them out)."""
    return Scenario(
        sandbox=sandbox,
        slack=slack,
        tmp_path=tmp_path,
        connection_id=connection_id,
        broker_url="memory://",
        state_url=redis_url,
        rules=RULE,
        options=FAST,
        webhook_secrets={"refunds": SecretStr(SECRET)},
        **settings,
    )


@pytest.fixture
def worker(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str, redis_url: str
) -> Iterator[Worker]:
    scenario = _scenario(
        sandbox,
        slack_stub,
        tmp_path,
        connection_id,
        redis_url,
        slack_bot_token=SecretStr("xoxb-test-bot-token"),
        slack_signing_secret=SecretStr(SIGNING),
    )
    made = Worker(scenario)
    yield made
    made.close()
    scenario.close()


def test_a_running_worker_takes_the_click_and_the_run_resumes(worker: Worker, slack_stub: StubServer) -> None:
    raw = json.dumps({"amount": "$1,200", "client": "Acme"}).encode()
    sent = {"Content-Type": "application/json", "X-PPW-Signature": sign(SECRET, raw)}
    assert worker.http.post("/hooks/refunds", content=raw, headers=sent).status_code == 202
    [post] = slack_stub.wait_for(1, "/api/chat.postMessage")
    assert post.json["text"] == "Refund $1,200 to Acme?"
    [actions] = [b for b in post.json["blocks"] if b["type"] == "actions"]
    value = actions["elements"][0]["value"]

    assert worker.click(value, secret="forged-secret").status_code == 401
    answer = worker.click(value)
    assert answer.status_code == 200 and answer.json()["ok"] is True
    assert worker.pump.tick() == 1  # due now: the pump sends its run message to the workers
    [told] = slack_stub.wait_for(1, "/hooks/T1/B1/billing-secret")
    assert told.json["text"] == f"Refund Acme approved by {PARTNER}"
    assert slack_stub.wait_for(1, "/api/chat.update")


def test_without_the_signing_secret_slack_clicks_are_not_taken(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str, redis_url: str
) -> None:
    scenario = _scenario(sandbox, slack_stub, tmp_path, connection_id, redis_url)
    made = Worker(scenario)
    try:
        answer = made.click(f"{connection_id} 0123456789abcdef")
        assert answer.status_code == 503 and "PPW_SLACK_SIGNING_SECRET" in answer.json()["detail"]
        link = made.http.get("/approvals/eyJjIjoieCJ9.abcdefghijklmnop")
        assert link.status_code == 503 and "PPW_APPROVAL_SECRET" in link.text
    finally:
        made.close()
        scenario.close()
