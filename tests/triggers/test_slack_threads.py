"""A Slack conversation from one rule: post, reply in its thread, then edit the post, with the ts
and channel id carried between steps by templates, over real HTTP to a Slack Web API stand-in."""

from __future__ import annotations

from collections.abc import Callable

from tests.triggers.conftest import HookWorker

CONVERSATION = """\
- id: intake-conversation
  trigger: {webhook: intake}
  steps:
    - id: notice
      type: slack.post
      with: {channel: "#intake", text: "New enquiry from {{ payload.name }}"}
    - id: detail
      type: slack.post
      with:
        channel: "#intake"
        thread: "{{ steps.notice.ts }}"
        text: "Email: {{ payload.email }}"
    - type: slack.update
      with:
        channel: "{{ steps.notice.channel }}"
        ts: "{{ steps.notice.ts }}"
        text: "New enquiry from {{ payload.name }} (details in thread)"
"""


def test_post_reply_in_thread_then_update(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(CONVERSATION)
    response = worker.post("intake", {"name": "Maya", "email": "maya@example.com"})
    assert response.status_code == 202, response.text
    [update] = worker.slack.wait_for(1, "/api/chat.update")
    notice, detail = worker.posts("/api/chat.postMessage")
    assert "thread_ts" not in notice.json
    ts = detail.json["thread_ts"]
    assert ts and update.json == {
        "channel": "C0123",
        "ts": ts,
        "text": "New enquiry from Maya (details in thread)",
    }
    (run,) = worker.scenario.wait_runs(1)
    assert run.status == "succeeded", run
