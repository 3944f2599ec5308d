"""slack.post against a local Slack stand-in: webhook by name, bot token, Slack's errors, 429."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from tests.actions.helpers import execute
from tests.fixtures.stubs import Reply, StubServer
from worker.actions.errors import StepError
from worker.actions.services import Services
from worker.settings import Settings
from worker.state.base import StateStore

TOKEN = "xoxb-test-token-123456"


def _services(store: StateStore, slack: StubServer) -> Services:
    settings = Settings(
        slack_webhooks={"billing": SecretStr(f"{slack.url}/hooks/T000/B000/secretpath")},
        slack_bot_token=SecretStr(TOKEN),
        slack_api_url=f"{slack.url}/api",
    )
    return Services(settings, store)


def test_webhook_by_name_posts_text_and_blocks(sqlite_store: StateStore, slack_stub: StubServer) -> None:
    svc = _services(sqlite_store, slack_stub)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Closed*"}}]
    result = execute(
        svc, "slack.post", {"webhook": "billing", "text": "Matter closed", "blocks": blocks}, connection="c"
    )
    [got] = slack_stub.received("/hooks/T000/B000/secretpath")
    assert got.json == {"text": "Matter closed", "blocks": blocks}
    assert result.output == {"ok": True}
    # the history never carries the webhook URL
    assert "secretpath" not in json.dumps([result.request, result.response])
    assert result.request["webhook"] == "billing"


def test_unknown_webhook_name_is_permanent(sqlite_store: StateStore, slack_stub: StubServer) -> None:
    svc = _services(sqlite_store, slack_stub)
    with pytest.raises(StepError) as caught:
        execute(svc, "slack.post", {"webhook": "nosuch", "text": "x"}, connection="c")
    assert not caught.value.transient and "PPW_SLACK_WEBHOOKS__NOSUCH" in caught.value.message


def test_webhook_errors_and_rate_limits(sqlite_store: StateStore, slack_stub: StubServer) -> None:
    svc = _services(sqlite_store, slack_stub)
    path = "/hooks/T000/B000/secretpath"
    slack_stub.script(path, Reply(400, "invalid_payload"), Reply(429, "rate_limited", {"Retry-After": "3"}))
    with pytest.raises(StepError) as invalid:
        execute(svc, "slack.post", {"webhook": "billing", "text": "x"}, connection="c")
    assert not invalid.value.transient and "invalid_payload" in invalid.value.message
    with pytest.raises(StepError) as limited:
        execute(svc, "slack.post", {"webhook": "billing", "text": "x"}, connection="c")
    assert limited.value.transient and limited.value.retry_after == 3.0
    assert "secretpath" not in invalid.value.message + limited.value.message


def test_bot_token_posts_to_channel(sqlite_store: StateStore, slack_stub: StubServer) -> None:
    svc = _services(sqlite_store, slack_stub)
    result = execute(svc, "slack.post", {"channel": "#billing", "text": "hello"}, connection="c")
    [got] = slack_stub.received("/api/chat.postMessage")
    assert got.header("Authorization") == f"Bearer {TOKEN}"
    assert got.json == {"channel": "#billing", "text": "hello"}
    assert result.output["ok"] is True and result.output["ts"]
    assert TOKEN not in json.dumps(result.request)


def test_ok_false_errors_are_reported(sqlite_store: StateStore, slack_stub: StubServer) -> None:
    svc = _services(sqlite_store, slack_stub)
    with pytest.raises(StepError) as caught:
        execute(svc, "slack.post", {"channel": "#nowhere", "text": "hello"}, connection="c")
    assert not caught.value.transient and "channel_not_found" in caught.value.message
    slack_stub.script(
        "/api/chat.postMessage", Reply(200, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
    )
    with pytest.raises(StepError) as limited:
        execute(svc, "slack.post", {"channel": "#billing", "text": "hello"}, connection="c")
    assert limited.value.transient and limited.value.retry_after == 1.0
