"""The "try it" form of a rule's page, against the PracticePanther sandbox over real HTTP: a record
id read live (as ``ppw rules explain``), pasted JSON (as ``ppw rules test``), why each condition
held or not, the steps' rendered request with secrets masked, clear messages for bad input, and
nothing written anywhere (the sandbox saw only GETs; the state store gained only the audit entry
and the API client's own rate-limit slots)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from tests.fixtures.client import SandboxAdmin, connect
from worker.console.audit import AuditLog
from worker.console.web import build_app
from worker.practicepanther.client import PracticePantherClient
from worker.rules.watcher import RuleRegistry
from worker.sandbox import SandboxServer
from worker.state.base import StateStore, key

from .conftest import SLACK_URL, Seeded, csrf_of, open_matter, polled, sandbox_console_settings, seed, sign_in

RULES = """\
- id: closed-matter
  description: "Tell billing when a litigation matter closes"
  trigger:
    resource: matters
    on: updated
    changed: status
    from: Open
    to: Closed
  conditions:
    - "'Litigation' in record.tags"
    - record.name.startswith('Whitman')
  steps:
    - id: tell
      type: slack.post
      with:
        webhook: billing
        text: "{{ record.name }} closed (was {{ changes.status.old }})"

- id: hook-rule
  trigger: {webhook: intake}
  steps: [{type: log, with: {message: "{{ payload.name }}"}}]
"""


@pytest.fixture
def tried(store: StateStore, connection_id: str, tmp_path: Path, sandbox: SandboxServer) -> Iterator[Seeded]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "matters.yaml").write_text(RULES, encoding="utf-8")
    hooks = {"intake": SecretStr("intake-secret-0123456789")}
    settings = sandbox_console_settings(store, connection_id, rules, sandbox, webhook_secrets=hooks)
    connect(settings, store)  # the operator connected the worker to PracticePanther
    made = seed(store, connection_id, settings)
    registry = RuleRegistry(settings=settings)
    registry.load()
    made.ops.ruleset = lambda: registry.ruleset
    yield made
    made.ops.app.close()


@pytest.fixture
def http(tried: Seeded) -> Iterator[TestClient]:
    with TestClient(build_app(tried.ops), follow_redirects=False) as client:
        yield client


def keyspace(store: StateStore, connection: str) -> dict[str, Any]:
    """Every key of the connection with what it holds (a hash's fields, a sorted set's size)."""
    out: dict[str, Any] = {}
    for name in store.scan(key(connection, "")):
        kind = store.key_type(name)
        if kind == "hash":  # snapshots are bytes
            fields = store.hkeys(name)
            out[name] = dict(zip(fields, store.hmget_bytes(name, fields), strict=True))
        elif kind == "zset":
            out[name] = store.zcard(name)
        else:
            out[name] = store.get(name)
    return out


def try_it(http: TestClient, rule: str, **form: str) -> Any:
    token = csrf_of(http.get(f"/rules/{rule}").text)
    return http.post(f"/rules/{rule}/try", data={"csrf": token, **form})


def test_a_live_record_says_why_each_condition_held_and_writes_nothing(
    tried: Seeded,
    http: TestClient,
    sandbox_admin: SandboxAdmin,
) -> None:
    matter = open_matter(sandbox_admin)
    with PracticePantherClient(tried.settings, tried.store) as client:
        polled(tried, client.get("matters", matter["id"]))
    sandbox_admin.mutate(
        [{"op": "update", "resource": "matters", "id": matter["id"], "data": {"status": "Closed"}}]
    )
    sign_in(http, "victor")  # a viewer may try: it only reads
    before = keyspace(tried.store, tried.connection)
    mark = sandbox_admin.mark()

    answer = try_it(http, "closed-matter", record_id=matter["id"], json="")

    assert answer.status_code == 200, answer.text
    page = answer.text
    assert f"matters {matter['id']}, read live from PracticePanther" in page
    assert "✔ fires" in page
    assert "changed since the last poll: status" in page
    assert "<code>&#34;Open&#34;</code></td><td><code>&#34;Closed&#34;</code>" in page  # old → new
    assert "&#39;Litigation&#39; in record.tags" in page and "record.name.startswith" in page
    assert page.count('class="held"><span class="mark">✔') >= 2
    assert "Whitman v. Garner closed (was Open)" in page  # the step's rendered text
    assert SLACK_URL not in page and "hooks.slack.com/services" not in page
    assert tried.settings.pp_client_secret.get_secret_value() not in page
    # PracticePanther saw reads only; nothing was sent, run or stored but the audit entry
    calls = sandbox_admin.requests(mark)["requests"]
    assert calls and {c["method"] for c in calls} == {"GET"}, calls
    assert tried.sent == [] and tried.emitted == []
    after = keyspace(tried.store, tried.connection)
    audit = key(tried.connection, "console-audit")
    added = {k for k in after if k not in before}
    assert added <= {audit} | {k for k in added if k.startswith(key(tried.connection, "ratelimit") + ":")}
    changed = {k for k in before if k in after and before[k] != after[k]}
    assert changed <= {audit}, changed
    [entry] = AuditLog(tried.store, tried.connection).recent()
    assert (entry.action, entry.user, entry.target, entry.outcome) == (
        "try",
        "victor",
        "closed-matter",
        "done",
    )
    assert entry.detail == f"record {matter['id']}: fires"


def test_a_failed_condition_names_its_value(
    tried: Seeded, http: TestClient, sandbox_admin: SandboxAdmin
) -> None:
    matter = open_matter(sandbox_admin, "Garner Estate")
    with PracticePantherClient(tried.settings, tried.store) as client:
        polled(tried, client.get("matters", matter["id"]))
    sandbox_admin.mutate(
        [{"op": "update", "resource": "matters", "id": matter["id"], "data": {"status": "Closed"}}]
    )
    sign_in(http)
    page = try_it(http, "closed-matter", record_id=matter["id"]).text
    assert "✘ does not fire: condition &#34;record.name.startswith(&#39;Whitman&#39;)&#34; is False" in page
    failed = page.split('class="failed"', 1)[1].split("</li>", 1)[0]
    assert "record.name.startswith" in failed and "false" in failed
    assert "would send if it did" in page  # steps shown, marked as not sent


def test_an_unknown_record_id_is_a_message_not_a_500(tried: Seeded, http: TestClient) -> None:
    sign_in(http)
    answer = try_it(http, "closed-matter", record_id="no-such-matter-42")
    assert answer.status_code == 404
    assert "PracticePanther has no matters record &#39;no-such-matter-42&#39;" in answer.text
    assert 'value="no-such-matter-42"' in answer.text  # what was typed stays in the form
    bad = try_it(http, "closed-matter", record_id="../../users/me")
    assert bad.status_code == 400 and "is not a record id" in bad.text


def test_pasted_json_an_event_with_old_and_new(tried: Seeded, http: TestClient) -> None:
    sign_in(http, "victor")
    event = {
        "type": "updated",
        "record": {"id": "m-9", "name": "Whitman Trust", "status": "Closed", "tags": ["Litigation"]},
        "changes": {"status": {"old": "Open", "new": "Closed"}},
    }
    page = try_it(http, "closed-matter", json=json.dumps(event)).text
    assert "pasted event" in page and "✔ fires" in page
    assert "Whitman Trust closed (was Open)" in page
    record = {"id": "m-10", "name": "Whitman Trust", "status": "Closed", "tags": []}
    page = try_it(http, "closed-matter", json=json.dumps(record)).text
    assert "pasted record (tried as a created matters)" in page
    assert "✘ does not fire: event type" in page  # a record alone is a created event
    assert tried.sent == []


def test_bad_json_says_where(http: TestClient) -> None:
    sign_in(http)
    answer = try_it(http, "closed-matter", json='{"type": "updated",\n  "record": {"id": 1,}}')
    assert answer.status_code == 400
    assert "the JSON does not parse: line 2, column" in answer.text
    listed = try_it(http, "closed-matter", json="[1, 2]")
    assert listed.status_code == 400 and "the JSON is a list: expected an object" in listed.text
    empty = try_it(http, "closed-matter", json="  ")
    assert empty.status_code == 400 and "paste a record or an event" in empty.text
    both = try_it(http, "closed-matter", record_id="m-1", json="{}")
    assert both.status_code == 400 and "not both" in both.text
    hook = try_it(http, "hook-rule", record_id="m-1")
    assert hook.status_code == 400 and "triggered by a webhook" in hook.text
    assert try_it(http, "hook-rule", json='{"type": "created", "record": {"name": "Ann"}}').status_code == 200


def test_the_form_needs_its_csrf_token_and_a_session(tried: Seeded, http: TestClient) -> None:
    assert http.post("/rules/closed-matter/try", data={"record_id": "x"}).status_code == 303  # to login
    sign_in(http, "victor")
    refused = http.post("/rules/closed-matter/try", data={"record_id": "x", "csrf": "forged"})
    assert refused.status_code == 403
    [entry] = AuditLog(tried.store, tried.connection).recent()
    assert (entry.action, entry.outcome) == ("try", "refused")
