"""Configured secrets never leave the process: not in logs, run history, the state store or Sentry.

``ppw run`` works with every kind of secret configured (client secret, Slack webhook URL and bot
token, a webhook signing secret, the token encryption key, a Sentry DSN pointing at a local
stand-in) and logs at DEBUG. A matter closes; one rule posts to Slack and calls a signed webhook,
another fails for good (Slack answers ``channel_not_found``) so an error is logged and reported to
Sentry. Then everything an operator or a third party could see is searched for every secret,
including the OAuth tokens PracticePanther handed out at run time:

- the worker's log output;
- what Sentry received (its envelopes, decompressed), which must not hold client data either;
- ``ppw runs list|show`` and ``ppw dlq list`` output, as typed;
- every value the worker keeps in the state store (tokens are stored encrypted).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from tests.chaos.conftest import Chaos
from tests.chaos.harness import eventually
from tests.fixtures.stubs import Recorded, StubServer, slack_api
from worker.cli import app
from worker.practicepanther.tokens import TokenStore
from worker.settings import get_settings

WEBHOOK_TOKEN = "xoxwebhookpathtoken7731"
BOT_TOKEN = "xoxb-1234-bot-token-secret-5521"
SIGNING = "whsec_signing_secret_8812"
SENTRY_KEY = "f00dfacecafe4b1d9e0sentrykey"
FERNET_KEY = Fernet.generate_key().decode()

RULES = """\
- id: sec-closed
  trigger: {{resource: matters, on: updated, changed: status, to: Closed}}
  steps:
    - id: tell
      type: slack.post
      with: {{webhook: billing, text: "closed {{{{ record.display_name }}}}"}}
    - id: signed
      type: http.request
      with:
        url: "{hook}"
        secret: signing
        json: {{matter: "{{{{ record.id }}}}"}}
- id: sec-broken
  trigger: {{resource: matters, on: updated, changed: status, to: Closed}}
  steps:
    - id: nowhere
      type: slack.post
      with: {{channel: "#nowhere", text: "closed {{{{ record.display_name }}}}"}}
"""


@pytest.fixture
def sentry() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


def _body(request: Recorded) -> str:
    raw = request.body
    if (request.header("Content-Encoding") or "").lower() == "gzip":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", "replace")


def test_no_secret_in_logs_history_state_or_sentry(
    chaos_factory: Callable[..., Chaos], stub_server: StubServer, sentry: StubServer, redis_url: str
) -> None:
    stub_server.route("/api/chat.postMessage", slack_api)
    webhook_url = f"{stub_server.url}/hooks/T0001/B0001/{WEBHOOK_TOKEN}"
    dsn = f"http://{SENTRY_KEY}@127.0.0.1:{sentry.url.rsplit(':', 1)[1]}/42"
    chaos = chaos_factory(
        state_url=redis_url,
        broker_url=redis_url,
        rules=RULES,
        PPW_SLACK_WEBHOOKS__BILLING=webhook_url,
        PPW_SLACK_BOT_TOKEN=BOT_TOKEN,
        PPW_SLACK_API_URL=f"{stub_server.url}/api",
        PPW_WEBHOOK_SECRETS__SIGNING=SIGNING,
        PPW_SENTRY_DSN=dsn,
        PPW_TOKEN_ENCRYPTION_KEY=FERNET_KEY,
        PPW_LOG_LEVEL="DEBUG",
        PPW_LOG_FORMAT="json",
    )
    worker = chaos.process("run").start()
    eventually(chaos.primed, 20, "the first poll to prime matters")
    [matter] = chaos.close(chaos.open_matters(1))

    dead = eventually(lambda: [r for r in chaos.runs() if r.status == "dead"], 30, "the broken rule to fail")
    eventually(lambda: [r for r in chaos.runs() if r.status == "succeeded"], 30, "the good rule to succeed")
    eventually(
        lambda: [r for r in sentry.requests if "dead-lettered" in _body(r)], 20, "Sentry to get the error"
    )

    tokens = TokenStore(chaos.store, chaos.connection, FERNET_KEY).load()
    assert tokens is not None
    secrets = {
        "client secret": chaos.settings.pp_client_secret.get_secret_value(),
        "slack webhook url": webhook_url,
        "slack webhook token": WEBHOOK_TOKEN,
        "slack bot token": BOT_TOKEN,
        "webhook signing secret": SIGNING,
        "sentry dsn": dsn,
        "sentry key": SENTRY_KEY,
        "token encryption key": FERNET_KEY,
        "access token": tokens.access_token.get_secret_value(),
        "refresh token": tokens.refresh_token.get_secret_value(),
    }

    def assert_clean(where: str, text: str) -> None:
        found = [name for name, value in secrets.items() if value in text]
        assert not found, f"{', '.join(found)} found in {where}"

    # the log
    log = worker.log()
    assert "dead-lettered" in log and '"level": "DEBUG"' in log, "the log really was written at DEBUG"
    assert_clean("the worker log", log)

    # Sentry: no secret, and none of the client's records. The envelope header names the DSN (and
    # its public key) it is addressed to: that credential belongs to Sentry; the rest must not.
    envelopes = "\n".join(_body(r).split("\n", 1)[1] for r in sentry.requests)
    assert_clean("Sentry envelopes", envelopes)
    assert matter["display_name"] not in envelopes, "client data reached Sentry"

    # run history as operators see it
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in chaos.env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        outputs = [
            runner.invoke(app, ["runs", "list", "--json"]),
            runner.invoke(app, ["runs", "show", dead[0].id, "--json"]),
            runner.invoke(app, ["runs", "show", dead[0].id]),
            runner.invoke(app, ["dlq", "list"]),
        ]
        get_settings.cache_clear()
    for result in outputs:
        assert result.exit_code == 0, result.output
    shown = "\n".join(r.output for r in outputs)
    assert dead[0].id[:10] in shown and "channel_not_found" in shown
    assert_clean("`ppw runs` / `ppw dlq` output", shown)

    # everything the worker keeps
    stored: list[Any] = []
    for name in chaos.store.scan(f"ppw:{chaos.connection}:"):
        stored.append(chaos.store.get(name) if _is_string(chaos, name) else name)
        if not _is_string(chaos, name):
            stored.append(json.dumps(chaos.store.hgetall(name)) if _is_hash(chaos, name) else "")
    assert_clean("the state store", "\n".join(str(v) for v in stored))


def _is_string(chaos: Chaos, name: str) -> bool:
    try:
        chaos.store.get(name)
        return True
    except Exception:
        return False


def _is_hash(chaos: Chaos, name: str) -> bool:
    try:
        chaos.store.hgetall(name)
        return True
    except Exception:
        return False
