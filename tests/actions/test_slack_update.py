"""slack.post's thread replies and slack.update, against a local Slack Web API stand-in."""

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

TOKEN = "xoxb-test-token-thread-42"


def _services(store: StateStore, slack: StubServer, token: str | None = TOKEN) -> Services:
    settings = Settings(
        slack_webhooks={"billing": SecretStr(f"{slack.url}/hooks/T000/B000/secretpath")},
        slack_bot_token=SecretStr(token) if token else None,
        slack_api_url=f"{slack.url}/api",
    )
    return Services(settings, store)


def test_a_reply_goes_into_the_thread_of_the_first_post(
    sqlite_store: StateStore, slack_stub: StubServer
) -> None:
    svc = _services(sqlite_store, slack_stub)
    first = execute(svc, "slack.post", {"channel": "#intake", "text": "New enquiry"}, connection="c")
    ts = first.output["ts"]
    assert ts and first.output["channel"] == "C0123"
    reply = execute(
        svc, "slack.post", {"channel": "#intake", "text": "Matter opened", "thread": ts}, connection="c"
    )
    parent, child = slack_stub.received("/api/chat.postMessage")
    assert "thread_ts" not in parent.json
    assert child.json == {"channel": "#intake", "text": "Matter opened", "thread_ts": ts}
    assert reply.output["ok"] is True


def test_thread_needs_a_channel() -> None:
    from worker.actions.params import SlackPostParams

    with pytest.raises(ValueError, match="thread: needs channel"):
        SlackPostParams.model_validate({"webhook": "billing", "text": "x", "thread": "1.2"})


def test_update_edits_the_message(sqlite_store: StateStore, slack_stub: StubServer) -> None:
    svc = _services(sqlite_store, slack_stub)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Done*"}}]
    result = execute(
        svc,
        "slack.update",
        {"channel": "C0123", "ts": "1718000000.000100", "text": "Done", "blocks": blocks},
        connection="c",
    )
    [got] = slack_stub.received("/api/chat.update")
    assert got.header("Authorization") == f"Bearer {TOKEN}"
    assert got.json == {"channel": "C0123", "ts": "1718000000.000100", "text": "Done", "blocks": blocks}
    assert result.output == {"ok": True, "channel": "C0123", "ts": "1718000000.000100"}
    assert TOKEN not in json.dumps([result.request, result.response])


def test_update_errors_rate_limits_and_a_missing_token(
    sqlite_store: StateStore, slack_stub: StubServer
) -> None:
    svc = _services(sqlite_store, slack_stub)
    with pytest.raises(StepError) as gone:
        execute(
            svc, "slack.update", {"channel": "C0123", "ts": "0000000000.000000", "text": "x"}, connection="c"
        )
    assert not gone.value.transient and "message_not_found" in gone.value.message
    with pytest.raises(StepError) as named:
        execute(svc, "slack.update", {"channel": "#intake", "ts": "1.2", "text": "x"}, connection="c")
    assert not named.value.transient and "channel_not_found" in named.value.message
    slack_stub.script(
        "/api/chat.update",
        Reply(200, {"ok": False, "error": "ratelimited"}, {"Retry-After": "2"}),
        Reply(429, "slow down", {"Retry-After": "4"}),
        Reply(503, "unavailable"),
    )
    for retry_after in (2.0, 4.0, None):
        with pytest.raises(StepError) as limited:
            execute(svc, "slack.update", {"channel": "C0123", "ts": "1.2", "text": "x"}, connection="c")
        assert limited.value.transient and limited.value.retry_after == retry_after
    assert TOKEN not in limited.value.message
    untokened = _services(sqlite_store, slack_stub, token=None)
    with pytest.raises(StepError, match=r"slack\.update needs PPW_SLACK_BOT_TOKEN") as missing:
        execute(untokened, "slack.update", {"channel": "C0123", "ts": "1.2", "text": "x"}, connection="c")
    assert not missing.value.transient


def test_update_needs_something_to_say() -> None:
    from worker.actions.params import SlackUpdateParams

    with pytest.raises(ValueError, match=r"slack\.update needs 'text' or 'blocks'"):
        SlackUpdateParams.model_validate({"channel": "C1", "ts": "1.2"})
