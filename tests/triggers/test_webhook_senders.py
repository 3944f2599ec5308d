"""Inbound webhooks signed the way real senders sign (``verify:``), over real HTTP to the worker.

Standard Webhooks deliveries are signed with the ``standardwebhooks`` reference library; Stripe's,
Typeform's and Calendly's with their published algorithms; GitHub's with the test vector GitHub
publishes. Each scheme accepts what its sender signs and refuses a tampered, stale or unsigned copy.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook
from typer.testing import CliRunner

from tests.triggers.conftest import HookWorker
from worker.cli import app
from worker.rules.model import WebhookVerify
from worker.settings import get_settings
from worker.triggers import TriggerOptions
from worker.triggers.auth import SCHEMES

SWH_SECRET = "whsec_" + base64.b64encode(b"ppw-standard-webhooks-test-key!!").decode()
OLD_SWH_SECRET = "whsec_" + base64.b64encode(b"an-older-key-being-rotated-out!!").decode()
STRIPE_SECRET = "whsec_stripe_test_5f3c2a9b8d7e6f1a"
GITHUB_SECRET = "It's a Secret to Everybody"  # GitHub's published test vector
TYPEFORM_SECRET = "typeform-test-secret-abc123"
CALENDLY_SECRET = "calendly-signing-key-0f9e8d7c"

RULES = "".join(
    f"""\
- id: via-{hook}
  trigger: {{webhook: {hook}, verify: {scheme}{extra}}}
  steps:
    - type: log
      with: {{message: "{hook} {{{{ payload }}}}"}}
"""
    for hook, scheme, extra in (
        ("standard", "standard-webhooks", ""),
        ("stripe", "stripe", ""),
        ("github", "github", ""),
        ("typeform", "typeform", ""),
        ("calendly", "calendly", ""),
        ("open", "none", ", allow_unsigned: true"),
    )
)

SECRETS = {
    "standard": SecretStr(SWH_SECRET),
    "stripe": SecretStr(STRIPE_SECRET),
    "github": SecretStr(GITHUB_SECRET),
    "typeform": SecretStr(TYPEFORM_SECRET),
    "calendly": SecretStr(CALENDLY_SECRET),
}
ALL_SECRETS = (SWH_SECRET, STRIPE_SECRET, GITHUB_SECRET, TYPEFORM_SECRET, CALENDLY_SECRET)


@pytest.fixture
def senders(hooks: Callable[..., HookWorker]) -> Callable[..., HookWorker]:
    def make(**kwargs: object) -> HookWorker:
        return hooks(RULES, webhook_secrets=SECRETS, **kwargs)

    return make


def _send(worker: HookWorker, hook: str, body: bytes, headers: dict[str, str], **kw: str) -> tuple[int, str]:
    response = worker.post(hook, body=body, secret=None, headers=headers, **kw)  # type: ignore[arg-type]
    error = response.json().get("error", "") if response.status_code >= 400 else ""
    for secret in ALL_SECRETS:
        assert secret not in response.text
    return response.status_code, error


# Standard Webhooks --------------------------------------------------------------------------------


def _swh(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
    }


def test_standard_webhooks_signed_by_the_reference_library_are_accepted_and_tampering_refused(
    senders: Callable[..., HookWorker],
) -> None:
    now = int(time.time())
    worker = senders(options=TriggerOptions(webhook_replay_window=300), clock=lambda: float(now))
    body = json.dumps({"type": "contact.created", "data": {"email": "maya@example.com"}}).encode()
    headers = _swh(SWH_SECRET, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, body)
    assert _send(worker, "standard", body, headers) == (202, "")

    other = b'{"type": "contact.created", "data": {"email": "mallory@example.com"}}'
    tampered_body = _send(worker, "standard", other, headers)
    tampered_time = _send(worker, "standard", body, {**headers, "webhook-timestamp": str(now - 1)})
    tampered_id = _send(worker, "standard", body, {**headers, "webhook-id": "msg_someone_else"})
    wrong_key = _send(worker, "standard", body, _swh(OLD_SWH_SECRET, "msg_k", now, body))
    stale = _send(worker, "standard", body, _swh(SWH_SECRET, "msg_old", now - 301, body))
    future = _send(worker, "standard", body, _swh(SWH_SECRET, "msg_new", now + 301, body))
    missing = _send(worker, "standard", body, {k: v for k, v in headers.items() if k != "webhook-id"})
    assert tampered_body == tampered_time == tampered_id == wrong_key == (401, "bad_signature")
    assert stale == future == (401, "stale")
    assert missing == (401, "unsigned")

    # a sender rotating its secret signs with both keys, space separated; and what the library
    # itself verifies, ppw accepts
    rotated_body = b'{"type": "rotated"}'
    old = _swh(OLD_SWH_SECRET, "msg_rot", now, rotated_body)["webhook-signature"]
    rotated = _swh(SWH_SECRET, "msg_rot", now, rotated_body)
    rotated["webhook-signature"] = f"{old} {rotated['webhook-signature']}"
    assert _send(worker, "standard", rotated_body, rotated) == (202, "")
    assert worker.metric("inbound:standard", "accepted") == 2
    assert worker.metric("inbound:standard", "bad_signature") == 4


def test_standard_webhooks_spec_test_vector_and_the_webhook_id_dedupes_retries(
    senders: Callable[..., HookWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the vector of the Standard Webhooks reference libraries' tests
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    monkeypatch.setitem(SECRETS, "standard", SecretStr(secret))
    worker = senders(clock=lambda: 1614265330.0 + 60)
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    first = worker.post("standard", body=body, secret=None, headers=headers)
    assert first.status_code == 202, first.text
    # the sender retries with the same webhook-id: the same event, however late
    again = worker.post("standard", body=body, secret=None, headers=headers)
    assert again.status_code == 202 and again.json() == {**first.json(), "duplicate": True}
    assert len(worker.scenario.wait_runs(1)) == 1


# Stripe: t=<ts>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>, Stripe's published algorithm ---------


def _stripe(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_stripe_signatures(senders: Callable[..., HookWorker]) -> None:
    now = int(time.time())
    worker = senders(options=TriggerOptions(webhook_replay_window=300), clock=lambda: float(now))
    body = json.dumps({"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "type": "invoice.paid"}).encode()
    good = _stripe(STRIPE_SECRET, now, body)
    # Stripe's header also carries a test-mode v0 and, while a secret rolls, two v1 values
    header = f"t={now},v1={_stripe('whsec_rolled_out', now, body)},v1={good},v0=6ffbb59b2300aae63f27"
    assert _send(worker, "stripe", body, {"Stripe-Signature": header}) == (202, "")
    assert _send(worker, "stripe", body + b" ", {"Stripe-Signature": f"t={now},v1={good}"}) == (
        401,
        "bad_signature",
    )
    assert _send(worker, "stripe", body, {"Stripe-Signature": f"t={now + 1},v1={good}"}) == (
        401,
        "bad_signature",
    )
    stale = f"t={now - 301},v1={_stripe(STRIPE_SECRET, now - 301, body)}"
    assert _send(worker, "stripe", body, {"Stripe-Signature": stale}) == (401, "stale")
    assert _send(worker, "stripe", body, {"Stripe-Signature": f"v1={good}"}) == (401, "bad_signature")
    # ppw's own header is not Stripe's
    assert _send(worker, "stripe", body, {"X-PPW-Signature": f"t={now},v1={good}"}) == (401, "unsigned")


# GitHub: X-Hub-Signature-256: sha256=<hex>, with the test vector GitHub's docs publish ------------


def test_github_signatures_with_githubs_test_vector(senders: Callable[..., HookWorker]) -> None:
    worker = senders()
    vector = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    # "Hello, World!" is not JSON: sent as a form body it parses (to one empty field)
    form = "application/x-www-form-urlencoded"
    assert _send(worker, "github", b"Hello, World!", {"X-Hub-Signature-256": vector}, content_type=form) == (
        202,
        "",
    )
    assert _send(worker, "github", b"Hello, World?", {"X-Hub-Signature-256": vector}, content_type=form) == (
        401,
        "bad_signature",
    )
    sha1 = "sha1=" + hmac.new(GITHUB_SECRET.encode(), b"Hello, World!", hashlib.sha1).hexdigest()
    assert _send(worker, "github", b"Hello, World!", {"X-Hub-Signature-256": sha1}, content_type=form) == (
        401,
        "bad_signature",
    )
    body = json.dumps({"action": "opened", "number": 7}).encode()
    signed = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert _send(
        worker, "github", body, {"X-Hub-Signature-256": signed.upper().replace("SHA256=", "sha256=")}
    ) == (
        202,
        "",
    )
    assert _send(worker, "github", body, {}) == (401, "unsigned")


# Typeform: Typeform-Signature: sha256=<base64 HMAC-SHA256 of the body> ---------------------------


def test_typeform_signatures(senders: Callable[..., HookWorker]) -> None:
    worker = senders()
    body = json.dumps({"event_type": "form_response", "form_response": {"answers": []}}).encode()
    mac = hmac.new(TYPEFORM_SECRET.encode(), body, hashlib.sha256).digest()
    signed = "sha256=" + base64.b64encode(mac).decode()
    assert _send(worker, "typeform", body, {"Typeform-Signature": signed}) == (202, "")
    hexed = "sha256=" + mac.hex()  # GitHub's encoding is not Typeform's
    assert _send(worker, "typeform", body, {"Typeform-Signature": hexed}) == (401, "bad_signature")
    assert _send(worker, "typeform", body[:-1] + b" }", {"Typeform-Signature": signed}) == (
        401,
        "bad_signature",
    )


# Calendly: Calendly-Webhook-Signature: t=<ts>,v1=<hex HMAC-SHA256(key, "<t>.<body>")> ------------


def test_calendly_signatures(senders: Callable[..., HookWorker]) -> None:
    now = int(time.time())
    worker = senders(options=TriggerOptions(webhook_replay_window=180), clock=lambda: float(now))
    body = json.dumps({"event": "invitee.created", "payload": {"email": "jo@example.com"}}).encode()

    def header(timestamp: int, payload: bytes = body) -> dict[str, str]:
        mac = hmac.new(CALENDLY_SECRET.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
        return {"Calendly-Webhook-Signature": f"t={timestamp},v1={mac.hexdigest()}"}

    assert _send(worker, "calendly", body, header(now - 100)) == (202, "")
    assert _send(worker, "calendly", body, header(now - 181)) == (401, "stale")
    assert _send(worker, "calendly", body.replace(b"jo@", b"eve@"), header(now)) == (401, "bad_signature")


# none, the log, and the registry -----------------------------------------------------------------


def test_an_unsigned_hook_needs_no_secret(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(RULES, webhook_secrets={})
    assert _send(worker, "open", b'{"hello": "world"}', {}) == (202, "")
    assert _send(worker, "github", b'{"hello": "world"}', {}) == (401, "no_secret")


def test_refusals_are_logged_with_the_reason_never_the_secret_or_signature(
    senders: Callable[..., HookWorker], caplog: pytest.LogCaptureFixture
) -> None:
    worker = senders()
    body = b'{"a": 1}'
    forged = "sha256=" + hmac.new(b"guess", body, hashlib.sha256).hexdigest()
    with caplog.at_level(logging.INFO, logger="worker.triggers"):
        assert _send(worker, "github", body, {"X-Hub-Signature-256": forged}) == (401, "bad_signature")
    text = caplog.text
    assert "github verification failed: X-Hub-Signature-256 does not match the body" in text
    assert forged[7:] not in text and GITHUB_SECRET not in text


def test_every_verify_name_has_a_scheme() -> None:
    assert set(get_args(WebhookVerify)) == set(SCHEMES)
    assert {s.name for s in SCHEMES.values() if not s.needs_secret} == {"none"}


# rules check -------------------------------------------------------------------------------------


CHECKED = """\
- id: typo
  trigger: {webhook: intake, verify: standard-webhook}
  steps: [{type: log, with: {message: x}}]
- id: open-by-mistake
  trigger: {webhook: intake, verify: none}
  steps: [{type: log, with: {message: x}}]
- id: open-on-purpose
  trigger: {webhook: open, verify: none, allow_unsigned: true}
  steps: [{type: log, with: {message: x}}]
- id: legacy-bearer
  trigger: {webhook: intake, auth: bearer}
  steps: [{type: log, with: {message: x}}]
"""


def test_rules_check_validates_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PPW_WEBHOOK_SECRETS__INTAKE", "whsec-cli-test-secret")
    get_settings.cache_clear()
    path = tmp_path / "hooks.yaml"
    path.write_text(CHECKED)
    try:
        result = CliRunner().invoke(app, ["rules", "check", str(path), "--format", "json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    found = {
        (d["line"], d["severity"], d["message"], d["hint"]) for d in json.loads(result.stdout)["diagnostics"]
    }
    assert (
        2,
        "error",
        "'standard-webhook' is not a valid verify scheme",
        "did you mean 'standard-webhooks'?",
    ) in found
    assert any(
        line == 5 and sev == "error" and "verify: none" in m and "allow_unsigned: true" in h
        for line, sev, m, h in found
    )
    assert any(
        line == 8 and sev == "warning" and "accepts unsigned deliveries" in m for line, sev, m, _ in found
    )
    assert not any(line >= 10 for line, *_ in found)  # auth: bearer still means what it did
