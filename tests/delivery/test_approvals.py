"""The ``approval`` step end to end: a run asks, waits stored like ``wait``, and goes on, ends or
branches on the decision, on real state (both backends), the sandbox and the worker's own HTTP
server (uvicorn) taking Slack's signed clicks and the links' GET/POST, with the local Slack double
and a real SMTP server (aiosmtpd); days pass on time-machine's clock.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import time_machine
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.e2e.conftest import eventually
from tests.fixtures.client import SandboxAdmin, sandbox_settings
from tests.fixtures.stubs import Reply, StubServer, slack_api, slack_update
from tests.polling.conftest import _log_in
from worker.actions.approval_requests import Approvals
from worker.actions.services import Services
from worker.delivery import report
from worker.delivery.app import DeliveryApp
from worker.delivery.dispatch import Dispatcher
from worker.delivery.history import run_lease_key
from worker.delivery.ledger import RunKey
from worker.delivery.options import DeliveryOptions
from worker.delivery.rulebook import EngineRuleBook
from worker.delivery.runner import Outcome, Runner
from worker.delivery.timers import TimerPump, wake_now
from worker.events import Change, Event
from worker.process.health import HealthServer
from worker.rules.watcher import RuleRegistry
from worker.sandbox import SandboxServer
from worker.state.base import StateStore
from worker.state.locks import Lease
from worker.triggers.approvals import ApprovalDesk, check_slack, slack_signature

SIGNING_SECRET = "slack-signing-secret-for-tests-0123456789"
APPROVAL_SECRET = "approval-link-secret-for-tests-0123456789abcdef"
PARTNER, OTHER_PARTNER, ASSOCIATE = "UPARTNER1", "UPARTNER2", "UASSOC9"

RULE = """\
- id: write-off
  trigger: {{resource: matters, on: updated}}
  steps:
    - id: partner
      type: approval
      with:
{with_}
    - id: tell
      type: http.request
      if: "{guard}"
      with:
        url: "{url}/tell"
        json: {{decision: "{{{{ steps.partner.decision }}}}", by: "{{{{ steps.partner.by }}}}"}}
"""

SLACK = f"""\
        via: slack
        channel: "#billing"
        approvers: [{PARTNER}, {OTHER_PARTNER}]
        text: "Write off the balance of {{{{ record.name }}}}?"
        timeout: "2 days"
"""


class Inbox:
    """aiosmtpd handler keeping what arrived."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK queued"

    def link(self, to: str) -> str:
        [mail] = [m for m in self.messages if m["To"] == to]
        body = mail.get_body(("plain",))
        assert body is not None
        found = re.search(r"http://\S+/approvals/\S+", body.get_content())
        assert found is not None
        return found.group(0)


class Office:
    """A firm with a rule that asks for approval, the worker that runs it and its HTTP server."""

    def __init__(
        self,
        sandbox: SandboxServer,
        store: StateStore,
        stub: StubServer,
        slack: StubServer,
        rules_dir: Path,
        connection: str,
        smtp_port: int,
    ) -> None:
        self.store, self.stub, self.slack, self.rules_dir, self.connection = (
            store,
            stub,
            slack,
            rules_dir,
            connection,
        )
        self.sandbox = sandbox
        base = sandbox_settings(
            sandbox,
            store.url,
            connection,
            rules_dir=rules_dir,
            http_allowed_hosts=["127.0.0.1"],
            timezone="America/New_York",
            rule_burst_per_minute=1000,
            slack_api_url=f"{slack.url}/api",
            slack_bot_token="xoxb-test-token-1234",
            slack_signing_secret=SIGNING_SECRET,
            approval_secret=APPROVAL_SECRET,
            smtp_url=f"smtp://127.0.0.1:{smtp_port}?starttls=false",
            smtp_from="ppw@firm.example",
            teams_webhooks={"partners": f"{stub.url}/teams"},
        )
        self.admin = SandboxAdmin(sandbox.url)
        _log_in(base, store)
        self.server: HealthServer | None = None
        self.settings = base
        self.boot()

    def boot(self) -> None:
        """(Re)build the worker: a fresh process after a restart knows only what the store holds."""
        if self.server is not None:  # a restart: the old process is gone
            self.http.close()
            self.server.stop()
            self.app.close()
        self.registry = RuleRegistry(settings=self.settings)
        options = DeliveryOptions(
            max_attempts=3, retry_base=0.01, retry_max=0.05, run_lease=5, queued_wait=0.01
        )
        self.app = DeliveryApp.create(
            self.settings,
            self.store,
            EngineRuleBook(lambda: self.registry.engine, self.settings),
            services=Services(self.settings, self.store),
            options=options,
        )

        def wake(connection: str, run_id: str) -> bool:
            return wake_now(self.app.history, self.store, connection, run_id, lease_ttl=5)

        self.desk = ApprovalDesk(self.settings, self.store, wake)
        self.server = HealthServer(self.settings, {}, routes=self.desk.routes(), host="127.0.0.1", port=0)
        self.server.start()
        # approvers reach this worker here: links point at it
        self.settings = self.settings.model_copy(update={"public_url": self.server.url})
        self.app.services.settings = self.settings
        self.dispatcher = Dispatcher(self.app)
        self.runner = Runner(self.app)
        self.woken: list[str] = []
        self.pump = TimerPump(self.store, self.connection, lambda _c, ids: self.woken.extend(ids))
        self.http = httpx.Client(base_url=self.server.url, timeout=20)

    def write(self, with_: str = SLACK, guard: str = "true", extra: str = "") -> None:
        body = with_ + extra
        text = RULE.format(with_=body.rstrip("\n"), guard=guard, url=self.stub.url)
        (self.rules_dir / "write-off.yaml").write_text(text)
        self.registry.load()
        assert not self.registry.status()["errors"], self.registry.status()["errors"]

    def start(self) -> str:
        account = self.admin.mutate(
            [{"op": "create", "resource": "accounts", "data": {"display_name": "Acme"}}]
        )
        body = {"name": "Estate of Smith", "status": "Open", "account_ref": {"id": account[0]["id"]}}
        record = self.admin.mutate([{"op": "create", "resource": "matters", "data": body}])[0]
        event = Event.build(
            type="updated",
            resource="matters",
            record_id=record["id"],
            revision="2026-03-02T15:00:01Z",
            connection=self.connection,
            record=record,
            changes={"status": Change(old="Pending", new="Open")},
        )
        self.app.events.save(event)
        [result] = self.dispatcher.dispatch_many(self.connection, [event.id], lambda *_: None)
        [run_id] = result.runs
        return run_id

    def run(self, run_id: str) -> Outcome:
        return self.runner.run(self.connection, run_id)

    def told(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.stub.requests if r.path == "/tell"]

    def posted(self) -> dict[str, Any]:
        [post] = [r.json for r in self.slack.requests if r.path == "/api/chat.postMessage"]
        return dict(post)

    def updates(self) -> list[dict[str, Any]]:
        return [r.json for r in self.slack.requests if r.path == "/api/chat.update"]

    def click(
        self,
        user: str,
        action: str = "ppw_approve",
        *,
        secret: str = SIGNING_SECRET,
        sent_at: float | None = None,
    ) -> httpx.Response:
        """What Slack sends when ``user`` presses a button of the posted message."""
        [buttons] = [b for b in self.posted()["blocks"] if b["type"] == "actions"]
        [button] = [e for e in buttons["elements"] if e["action_id"] == action]
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower()},
            "actions": [{"action_id": action, "block_id": "ppw_approval", "value": button["value"]}],
            "response_url": f"{self.slack.url}/respond",
            "channel": {"id": "C0123"},
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        stamp = str(int(sent_at if sent_at is not None else time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": slack_signature(secret, stamp, body),
        }
        return self.http.post("/slack/interactivity", content=body, headers=headers)

    def wake_and_run(self, run_id: str) -> Outcome:
        assert self.pump.tick() == 1 and self.woken[-1] == run_id
        return self.run(run_id)

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.app.close()
        self.admin.http.close()


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def slack() -> Iterator[StubServer]:
    server = StubServer()
    server.route("/api/chat.postMessage", slack_api)
    server.route("/api/chat.update", slack_update)
    server.route("/respond", lambda _r: Reply(200, "ok"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def office(
    sandbox_factory: Callable[..., SandboxServer],
    store: StateStore,
    stub_server: StubServer,
    slack: StubServer,
    smtp: tuple[Inbox, int],
    tmp_path: Path,
    connection_id: str,
    clock: time_machine.Coordinates,
) -> Iterator[Office]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    made = Office(sandbox_factory(seed=None), store, stub_server, slack, rules_dir, connection_id, smtp[1])
    made.write()
    yield made
    made.close()


# Slack -----------------------------------------------------------------------------------------------


def test_slacks_published_example_signature_is_accepted_and_a_stale_one_refused() -> None:
    """The worked example of Slack's "Verifying requests from Slack"."""
    secret, stamp = "8f742231b10e8888abcd99yyyzzz85a5", "1531420618"
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    headers = {"x-slack-request-timestamp": stamp, "x-slack-signature": signature}
    assert slack_signature(secret, stamp, body) == signature
    assert check_slack(secret, headers, body, now=1531420618 + 60) is None
    assert "away" in str(check_slack(secret, headers, body, now=1531420618 + 301))
    assert "does not match" in str(check_slack(secret, headers, body + b"x", now=1531420618))


def test_approved_in_slack_the_run_continues_with_who_and_when(office: Office) -> None:
    run_id = office.start()
    assert office.run(run_id).status == "waiting"
    post = office.posted()
    assert post["channel"] == "#billing" and "Estate of Smith" in post["text"]
    assert f"<@{PARTNER}>" in json.dumps(post["blocks"])
    assert office.pump.tick() == 0  # nothing is due before someone decides

    answer = office.click(PARTNER)
    assert answer.status_code == 200 and answer.json()["ok"] is True
    [update] = office.updates()  # the buttons give way to the decision
    assert "Approved" in json.dumps(update["blocks"]) and "actions" not in json.dumps(update["blocks"])

    done = office.wake_and_run(run_id)
    assert done.status == "succeeded"
    assert office.told() == [{"decision": "approved", "by": PARTNER}]
    step = office.app.history.get(office.connection, run_id).step("partner")
    assert step is not None and step.status == "done" and step.response is not None
    assert step.response["decision"] == "approved" and step.response["by"] == PARTNER
    assert step.response["via"] == "slack" and step.response["at"].startswith("2026-03-02")
    shown = report.run_detail(office.app.history.get(office.connection, run_id))  # ppw runs show
    assert "approved" in shown and PARTNER in shown

    again = office.click(OTHER_PARTNER, "ppw_decline")  # too late: decided
    assert again.status_code == 409 and f"approved by {PARTNER}" in again.json()["text"]
    assert office.pump.tick() == 0 and len(office.told()) == 1


def test_declined_in_slack_the_run_ends_with_the_decision_as_reason(office: Office) -> None:
    run_id = office.start()
    office.run(run_id)
    assert office.click(OTHER_PARTNER, "ppw_decline").json()["ok"] is True
    ended = office.wake_and_run(run_id)
    assert ended.status == "cancelled" and office.told() == []
    run = office.app.history.get(office.connection, run_id)
    assert (
        run.reason is not None and f"declined by {OTHER_PARTNER}" in run.reason and "via slack" in run.reason
    )
    assert office.app.timers.pending(office.connection) == 0


def test_on_decline_continue_lets_later_steps_take_the_decline_branch(office: Office) -> None:
    office.write(extra="        on_decline: continue\n", guard="steps.partner.declined")
    run_id = office.start()
    office.run(run_id)
    office.click(PARTNER, "ppw_decline")
    assert office.wake_and_run(run_id).status == "succeeded"
    assert office.told() == [{"decision": "declined", "by": PARTNER}]


def test_no_decision_by_the_timeout_ends_the_run(office: Office, clock: time_machine.Coordinates) -> None:
    run_id = office.start()
    office.run(run_id)
    clock.shift(timedelta(days=1))
    assert office.pump.tick() == 0
    clock.shift(timedelta(days=1, seconds=1))
    ended = office.wake_and_run(run_id)
    assert ended.status == "cancelled" and office.told() == []
    reason = office.app.history.get(office.connection, run_id).reason
    assert reason is not None and "timed out" in reason
    assert "the timeout" in json.dumps(office.updates()[-1]["blocks"])
    late = office.click(PARTNER)  # the buttons were replaced; a late click is told so
    assert late.status_code == 409 and "timed out" in late.json()["text"]


def test_on_timeout_approve_continues(office: Office, clock: time_machine.Coordinates) -> None:
    office.write(extra="        on_timeout: approve\n")
    run_id = office.start()
    office.run(run_id)
    clock.shift(timedelta(days=2, seconds=1))
    assert office.wake_and_run(run_id).status == "succeeded"
    assert office.told() == [{"decision": "approved", "by": "timeout"}]


def test_a_bad_signature_and_a_stale_timestamp_are_refused_and_decide_nothing(office: Office) -> None:
    run_id = office.start()
    office.run(run_id)
    forged = office.click(PARTNER, secret="not-the-signing-secret")
    assert forged.status_code == 401 and "does not match" in forged.json()["detail"]
    replayed = office.click(PARTNER, sent_at=time.time() - 301)
    assert replayed.status_code == 401 and "away" in replayed.json()["detail"]
    unsigned = office.http.post("/slack/interactivity", content=b"payload=%7B%7D")
    assert unsigned.status_code == 401
    assert office.pump.tick() == 0 and office.updates() == []
    assert SIGNING_SECRET not in forged.text + replayed.text


def test_a_non_approver_is_told_privately_and_decides_nothing(office: Office) -> None:
    run_id = office.start()
    office.run(run_id)
    answer = office.click(ASSOCIATE)
    assert answer.status_code == 200 and answer.json()["ok"] is False
    [told] = [r.json for r in office.slack.requests if r.path == "/respond"]
    assert told["response_type"] == "ephemeral" and f"<@{PARTNER}>" in told["text"]
    assert office.pump.tick() == 0
    assert office.click(PARTNER).json()["ok"] is True  # an approver still can


def test_two_clicks_at_once_one_decision_one_wake(office: Office) -> None:
    run_id = office.start()
    office.run(run_id)
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(2)

    def press(user: str, action: str) -> None:
        barrier.wait()
        answers.append(office.click(user, action))

    threads = [
        threading.Thread(target=press, args=(PARTNER, "ppw_approve")),
        threading.Thread(target=press, args=(OTHER_PARTNER, "ppw_decline")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 409]
    [winner] = [a for a in answers if a.status_code == 200]
    [loser] = [a for a in answers if a.status_code == 409]
    assert "already" in loser.json()["text"]
    outcome = office.wake_and_run(run_id)
    assert office.pump.tick() == 0  # woken once
    expected = "succeeded" if "approved" in winner.json()["text"] else "cancelled"
    assert outcome.status == expected and len(office.updates()) == 1


def test_the_decision_reaches_a_fresh_worker_after_a_restart(office: Office) -> None:
    run_id = office.start()
    office.run(run_id)
    office.boot()  # every process restarted: only the state store remembers the wait
    office.registry.load()
    assert office.click(PARTNER).json()["ok"] is True
    assert office.click(PARTNER).status_code == 409  # Slack retrying the click: still once
    assert office.wake_and_run(run_id).status == "succeeded"
    assert office.run(run_id).status == "already" and len(office.told()) == 1


# links: email and Teams ------------------------------------------------------------------------------

EMAIL = """\
        via: email
        approvers: "A. Partner <a.partner@firm.example>, b.partner@firm.example"
        subject: "Write-off: {{ record.name }}"
        text: "Write off the balance of {{ record.name }}?"
        timeout: "2 business days"
"""


def test_email_links_a_get_never_decides_the_post_does_and_only_once(
    office: Office, smtp: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp
    office.write(EMAIL)
    run_id = office.start()
    assert office.run(run_id).status == "waiting"
    assert sorted(m["To"] for m in inbox.messages) == ["a.partner@firm.example", "b.partner@firm.example"]
    assert {m["Subject"] for m in inbox.messages} == {"Write-off: Estate of Smith"}
    link_a, link_b = inbox.link("a.partner@firm.example"), inbox.link("b.partner@firm.example")
    assert link_a != link_b and link_a.startswith(office.server.url + "/approvals/")

    for _ in range(3):  # a mail scanner, a preview, the approver: looking decides nothing
        page = office.http.get(link_b)
        assert page.status_code == 200 and "Approve" in page.text and "Estate of Smith" in page.text
        assert page.headers["cache-control"] == "no-store"
    assert office.pump.tick() == 0

    used = office.http.post(link_b, data={"decision": "approve"})
    assert used.status_code == 200 and "approved by b.partner@firm.example" in used.text
    again = office.http.post(link_b, data={"decision": "decline"})
    assert again.status_code == 409 and "already approved" in again.text
    other = office.http.get(link_a)
    assert other.status_code == 409 and "b.partner@firm.example" in other.text and "<form" not in other.text

    assert office.wake_and_run(run_id).status == "succeeded"
    assert office.told() == [{"decision": "approved", "by": "b.partner@firm.example"}]
    run = office.app.history.get(office.connection, run_id)
    assert "/approvals/" not in json.dumps(run.model_dump())  # links are capabilities: never in history


def test_a_link_expires_with_the_timeout_and_a_tampered_one_is_refused(
    office: Office, smtp: tuple[Inbox, int], clock: time_machine.Coordinates
) -> None:
    inbox, _port = smtp
    office.write(EMAIL)
    run_id = office.start()
    office.run(run_id)
    link = inbox.link("a.partner@firm.example")
    tampered = link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb")
    assert office.http.get(tampered).status_code == 404
    clock.shift(timedelta(days=5))  # past two business days
    expired = office.http.post(link, data={"decision": "approve"})
    assert expired.status_code == 410 and "expired" in expired.text
    assert office.wake_and_run(run_id).status == "cancelled"  # the timeout: declined, the run ends


def test_teams_card_links_per_approver(office: Office) -> None:
    office.write(
        """\
        via: teams
        webhook: partners
        approvers: [a.partner@firm.example]
        text: "Write off the balance of {{ record.name }}?"
        timeout: "4h"
        on_decline: continue
"""
    )
    run_id = office.start()
    assert office.run(run_id).status == "waiting"
    [post] = [r for r in office.stub.requests if r.path == "/teams"]
    card = post.json["attachments"][0]["content"]
    [action] = card["actions"]
    assert action["title"] == "Review as a.partner@firm.example"
    assert office.http.post(action["url"], data={"decision": "decline"}).status_code == 200
    assert office.wake_and_run(run_id).status == "succeeded"
    assert office.told() == [{"decision": "declined", "by": "a.partner@firm.example"}]


def test_a_retry_after_a_failed_post_asks_once(office: Office) -> None:
    office.slack.script("/api/chat.postMessage", Reply(200, {"ok": False, "error": "ratelimited"}))
    run_id = office.start()
    assert office.run(run_id).status == "retrying"
    assert office.run(run_id).status == "waiting"
    assert office.run(run_id).status == "waiting"  # a duplicate message: no second request
    posts = [r for r in office.slack.requests if r.path == "/api/chat.postMessage"]
    assert len(posts) == 2
    request = Approvals(office.store, office.settings).request(office.connection, _step_key(office, run_id))
    assert request is not None and request.posted and request.ts


def _step_key(office: Office, run_id: str) -> str:
    from worker.actions.base import step_key

    run = office.app.history.get(office.connection, run_id)
    return step_key(run.event_id, run.rule_id, "partner")


def test_a_click_while_a_worker_holds_the_run_wakes_it_once_the_worker_lets_go(office: Office) -> None:
    """The click can come before the run has stored its wait (it posted, then stores): the winner
    waits for the run's lease instead of writing a wake time the run would overwrite."""
    run_id = office.start()
    office.run(run_id)
    worker = Lease(office.store, run_lease_key(office.connection, run_id), ttl=5)
    assert worker.acquire()
    answers: list[httpx.Response] = []
    clicking = threading.Thread(target=lambda: answers.append(office.click(PARTNER)))
    clicking.start()
    approvals = Approvals(office.store, office.settings)
    eventually(lambda: approvals.decision(office.connection, _step_key(office, run_id)), message="decided")
    assert office.pump.tick() == 0  # decided, but not woken while the worker holds the run
    worker.release()
    clicking.join()
    assert answers[0].json()["ok"] is True
    assert office.wake_and_run(run_id).status == "succeeded"


# on_decline: a branch of steps ----------------------------------------------------------------------

BRANCH_RULE = """\
- id: write-off
  trigger: {{resource: matters, on: updated}}
  steps:
    - id: partner
      type: approval
      with:
{with_}
        on_decline:
          - id: sorry
            type: http.request
            with:
              url: "{url}/declined"
              json: {{by: "{{{{ steps.partner.by }}}}", timed_out: "{{{{ steps.partner.timed_out }}}}"}}
          - id: sorry_again
            type: http.request
            if: steps.sorry.status == 200
            with: {{url: "{url}/declined-too", json: {{after: "{{{{ steps.sorry.status }}}}"}}}}
    - id: tell
      type: http.request
      with:
        url: "{url}/tell"
        json: {{decision: "{{{{ steps.partner.decision }}}}", by: "{{{{ steps.partner.by }}}}"}}
"""


def _write_branch(office: Office) -> None:
    text = BRANCH_RULE.format(with_=SLACK.rstrip("\n"), url=office.stub.url)
    (office.rules_dir / "write-off.yaml").write_text(text)
    office.registry.load()
    assert not office.registry.status()["errors"], office.registry.status()["errors"]


def _paths(office: Office) -> list[str]:
    return [r.path for r in office.stub.requests if r.path in ("/tell", "/declined", "/declined-too")]


def _statuses(office: Office, run_id: str) -> dict[str, str]:
    return {s.id: s.status for s in office.app.history.get(office.connection, run_id).steps}


def test_declined_the_branch_runs_and_the_rest_does_not(office: Office) -> None:
    _write_branch(office)
    run_id = office.start()
    assert office.run(run_id).status == "waiting"
    office.click(OTHER_PARTNER, "ppw_decline")
    assert office.wake_and_run(run_id).status == "succeeded"
    assert _paths(office) == ["/declined", "/declined-too"]
    [declined] = [json.loads(r.body) for r in office.stub.requests if r.path == "/declined"]
    assert declined == {"by": OTHER_PARTNER, "timed_out": False}  # rendered when the step ran
    assert _statuses(office, run_id) == {
        "partner": "done",
        "sorry": "done",
        "sorry_again": "done",
        "tell": "skipped",
    }
    run = office.app.history.get(office.connection, run_id)
    entries = office.app.ledger.entries(RunKey.of(run), ["sorry", "sorry_again", "tell"])  # each its own
    assert {k: e.status for k, e in entries.items()} == {
        "sorry": "done",
        "sorry_again": "done",
        "tell": "skipped",
    }


def test_approved_the_rest_runs_and_the_branch_does_not(office: Office) -> None:
    _write_branch(office)
    run_id = office.start()
    office.run(run_id)
    office.click(PARTNER)
    assert office.wake_and_run(run_id).status == "succeeded"
    assert _paths(office) == ["/tell"]
    assert office.told() == [{"decision": "approved", "by": PARTNER}]
    assert _statuses(office, run_id) == {
        "partner": "done",
        "sorry": "skipped",
        "sorry_again": "skipped",
        "tell": "done",
    }


def test_a_timeout_that_declines_takes_the_branch(office: Office, clock: time_machine.Coordinates) -> None:
    _write_branch(office)
    run_id = office.start()
    office.run(run_id)
    clock.shift(timedelta(days=2, seconds=1))
    assert office.wake_and_run(run_id).status == "succeeded"
    assert _paths(office) == ["/declined", "/declined-too"]
    [declined] = [json.loads(r.body) for r in office.stub.requests if r.path == "/declined"]
    assert declined == {"by": "timeout", "timed_out": True}
    step = office.app.history.get(office.connection, run_id).step("partner")
    assert step is not None and step.response is not None and step.response["timed_out"] is True
