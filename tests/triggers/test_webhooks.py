"""Inbound webhooks over real HTTP: the worker's server, real Redis, workers running the rules, a
Slack stand-in receiving what the rules post."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.triggers.conftest import BEARER, SECRET, HookWorker, eventually
from worker.triggers import TriggerOptions

NOTIFY = """\
- id: notify
  trigger:
    webhook: intake
    schema:
      type: object
      required: [name, email]
      properties:
        name: {type: string, minLength: 1}
        email: {type: string, format: email}
        amount: {type: number}
  steps:
    - type: slack.post
      with:
        webhook: billing
        text: "New enquiry from {{ payload.name }} <{{ payload.email }}> ({{ event.id }})"
- id: zapier-relay
  trigger: {webhook: zapier, auth: bearer}
  steps:
    - type: slack.post
      with: {channel: "#zapier", text: "zapier says {{ payload.message }}"}
"""

INTAKE_PATH = "/hooks/T1/B1/billing-secret"  # the Slack incoming webhook PPW_SLACK_WEBHOOKS__BILLING
CHANNEL_PATH = "/api/chat.postMessage"  # Slack's Web API (channel: with the bot token)


def _texts(worker: HookWorker, path: str = INTAKE_PATH) -> list[str]:
    return [r.json["text"] for r in worker.posts(path)]


def test_signed_delivery_is_queued_before_the_answer_and_runs_the_rule(
    hooks: Callable[..., HookWorker],
) -> None:
    worker = hooks(NOTIFY)
    response = worker.post("intake", {"name": "Maya O'Connell", "email": "maya@example.com"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["duplicate"] is False and len(body["event_id"]) == 32
    # queued before the answer: the event is already in the state store
    stored = worker.scenario.runtime.app.events.load(worker.scenario.connection, body["event_id"])  # type: ignore[union-attr]
    assert stored.type == "webhook" and stored.resource == "webhook:intake"
    assert stored.record["payload"] == {"name": "Maya O'Connell", "email": "maya@example.com"}
    (post,) = worker.slack.wait_for(1, INTAKE_PATH)
    assert post.json["text"] == f"New enquiry from Maya O'Connell <maya@example.com> ({body['event_id']})"
    assert worker.metric("inbound:intake", "accepted") == 1


def test_form_encoded_bodies_are_accepted(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(NOTIFY)
    form = b"name=Jo+Park&email=jo%40example.com"
    response = worker.post("intake", body=form, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 202, response.text
    worker.slack.wait_for(1, INTAKE_PATH)
    assert _texts(worker)[0].startswith("New enquiry from Jo Park <jo@example.com>")


def test_unsigned_wrongly_signed_and_stale_deliveries_get_401_and_are_counted(
    hooks: Callable[..., HookWorker],
) -> None:
    now = time.time()
    worker = hooks(NOTIFY, options=TriggerOptions(webhook_replay_window=300), clock=lambda: now)
    payload = {"name": "Mallory", "email": "m@example.com"}
    unsigned = worker.post("intake", payload, secret=None)
    wrong = worker.post("intake", payload, secret="not-the-secret")
    stale = worker.post("intake", payload, timestamp=int(now) - 301)
    future = worker.post("intake", payload, timestamp=int(now) + 400)
    garbled = worker.post("intake", payload, secret=None, headers={"X-PPW-Signature": "v1=abc"})
    for response, reason in (
        (unsigned, "unsigned"),
        (wrong, "bad_signature"),
        (stale, "stale"),
        (future, "stale"),
        (garbled, "bad_signature"),
    ):
        assert response.status_code == 401, (reason, response.text)
        assert response.json()["error"] == reason
        assert "WWW-Authenticate" in response.headers
        assert SECRET not in response.text
    assert worker.metric("inbound:intake", "unsigned") == 1
    assert worker.metric("inbound:intake", "bad_signature") == 2
    assert worker.metric("inbound:intake", "stale") == 2
    # a signature just inside the window is fine
    assert worker.post("intake", payload, timestamp=int(now) - 299).status_code == 202
    assert len(worker.scenario.wait_runs(1)) == 1
    assert len(worker.posts(INTAKE_PATH)) == 1


def test_bearer_hooks_want_the_token(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(NOTIFY)
    signed_only = worker.post("zapier", {"message": "hi"}, secret=BEARER)
    assert signed_only.status_code == 401 and signed_only.json()["error"] == "unsigned"
    wrong = worker.post("zapier", {"message": "hi"}, secret=None, bearer="guess")
    assert wrong.status_code == 401 and wrong.json()["error"] == "bad_token"
    ok = worker.post("zapier", {"message": "hi"}, secret=None, bearer=BEARER)
    assert ok.status_code == 202, ok.text
    (post,) = worker.slack.wait_for(1, CHANNEL_PATH)
    assert post.json["text"] == "zapier says hi"


def test_retried_deliveries_fire_once(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(NOTIFY)
    payload = {"name": "Ana", "email": "ana@example.com"}
    keyed = [worker.post("intake", payload, headers={"Idempotency-Key": "form-4711"}) for _ in range(3)]
    assert [r.status_code for r in keyed] == [202, 202, 202]
    ids = {r.json()["event_id"] for r in keyed}
    assert len(ids) == 1
    assert [r.json()["duplicate"] for r in keyed] == [False, True, True]
    # the same body again without a key, within the dedupe window: the same delivery
    plain = {"name": "Ben", "email": "ben@example.com"}
    first, again = worker.post("intake", plain), worker.post("intake", plain)
    assert first.json()["event_id"] == again.json()["event_id"] and again.json()["duplicate"] is True
    # the same key with a different body is a client bug, not a retry
    conflict = worker.post("intake", plain, headers={"Idempotency-Key": "form-4711"})
    assert conflict.status_code == 409
    worker.scenario.wait_runs(2)
    assert len(worker.scenario.runs()) == 2  # one run per delivery, however often it came
    texts = _texts(worker)
    assert len(texts) == 2, texts
    assert sum("Ana" in t for t in texts) == 1 and sum("Ben" in t for t in texts) == 1
    assert worker.metric("inbound:intake", "duplicate") == 3


def test_same_body_after_the_dedupe_window_is_a_new_delivery(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(NOTIFY, options=TriggerOptions(webhook_dedupe_window=1))
    payload = {"name": "Cy", "email": "cy@example.com"}
    first = worker.post("intake", payload)
    markers = f"ppw:{worker.scenario.connection}:webhook-body:"
    eventually(lambda: not list(worker.scenario.store.scan(markers)), 5, "the dedupe window to pass")
    second = worker.post("intake", payload)
    assert second.json()["event_id"] != first.json()["event_id"]
    assert len(worker.scenario.wait_runs(2)) == 2


def test_oversize_unknown_invalid_and_unsupported(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(NOTIFY, options=TriggerOptions(webhook_max_body=1024))
    big = {"name": "x" * 2000, "email": "big@example.com"}
    too_large = worker.post("intake", big)
    assert too_large.status_code == 413 and too_large.json()["error"] == "too_large"
    assert worker.metric("inbound:intake", "too_large") == 1
    assert worker.post("nobody-listens", {"a": 1}).status_code == 404
    invalid = worker.post("intake", {"name": "", "email": "not an email", "amount": "12"})
    assert invalid.status_code == 422
    problems = {p["path"]: p["message"] for p in invalid.json()["problems"]}
    assert set(problems) == {"/name", "/email", "/amount"}
    missing = worker.post("intake", {"name": "No Email"})
    assert missing.status_code == 422 and "'email' is a required property" in missing.text
    broken = worker.post("intake", body=b'{"name": "x",', content_type="application/json")
    assert broken.status_code == 400 and "line 1" in broken.json()["detail"]
    xml = worker.post("intake", body=b"<name>x</name>", content_type="application/xml")
    assert xml.status_code == 415
    assert worker.http.get("/hooks/intake").status_code == 405
    assert worker.scenario.runs() == [] and worker.posts(INTAKE_PATH) == []


def test_a_burst_over_the_rate_limit_gets_429_with_retry_after(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(NOTIFY, options=TriggerOptions(webhook_rate_per_minute=3))
    answers = [worker.post("intake", {"name": f"n{i}", "email": f"n{i}@example.com"}) for i in range(5)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    retry_after = int(answers[3].headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert worker.metric("inbound:intake", "rate_limited") == 2
    worker.slack.wait_for(3, INTAKE_PATH)
    # other hooks have their own allowance
    assert worker.post("zapier", {"message": "x"}, secret=None, bearer=BEARER).status_code == 202


def test_a_hook_without_a_configured_secret_refuses_everything(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(NOTIFY, webhook_secrets={})
    response = worker.post("intake", {"name": "A", "email": "a@example.com"})
    assert response.status_code == 401 and response.json()["error"] == "no_secret"


def test_the_broker_failing_is_503_and_the_retry_is_not_a_duplicate(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(NOTIFY)
    real_emit = worker.intake.emit
    failures = [1]

    def flaky_emit(events: list) -> None:  # type: ignore[type-arg]
        if failures:
            failures.pop()
            raise ConnectionError("broker unreachable")
        real_emit(events)

    worker.intake.emit = flaky_emit
    payload = {"name": "Dee", "email": "dee@example.com"}
    down = worker.post("intake", payload, headers={"Idempotency-Key": "k-1"})
    assert down.status_code == 503 and down.headers["Retry-After"]
    up = worker.post("intake", payload, headers={"Idempotency-Key": "k-1"})
    assert up.status_code == 202 and up.json()["duplicate"] is False
    worker.slack.wait_for(1, INTAKE_PATH)


ALSO_ON_INTAKE = """\
- id: also-on-intake
  trigger: {webhook: intake, auth: bearer, secret: zapier}
  steps:
    - type: log
      with: {message: "seen {{ payload.name }}"}
"""


def test_rules_sharing_a_hook_must_all_be_satisfied(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(NOTIFY + ALSO_ON_INTAKE)
    payload = {"name": "Eve", "email": "eve@example.com"}
    signed_only = worker.post("intake", payload)
    assert signed_only.status_code == 401
    both = worker.post("intake", payload, bearer=BEARER)
    assert both.status_code == 202, both.text
    runs = worker.scenario.wait_runs(2)
    assert {r.rule_id for r in runs} == {"notify", "also-on-intake"}
    assert len(worker.posts(INTAKE_PATH)) == 1
