"""The Rules page: every rule in force (file, id, trigger, mode, enabled), every error of the rules
that did not load at file:line:column, and a rule's own source on its page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from worker.console.web import build_app
from worker.rules.watcher import RuleRegistry
from worker.state.base import StateStore

from .conftest import Seeded, console_settings, seed, sign_in

MATTERS = """\
# two rules in one file
- id: closed-matter
  description: "A note when a matter closes"
  trigger:
    resource: matters
    on: updated
    changed: status
    from: Open
    to: Closed
  mode: single
  steps:
    - type: log
      with: {message: "closed {{ record.id }}"}

- id: nightly
  enabled: false
  trigger: {schedule: "0 2 * * *", timezone: America/New_York}
  steps: [{type: log, with: {message: night}}]
"""

HOOK = """\
id: intake-form
trigger:
  webhook: intake
steps:
  - type: log
    with: {message: "{{ payload.name }}"}
"""

BROKEN = """\
- id: typo
  trigger: {resource: matters}
  steps:
    - type: slak.post
      with: {text: hi}
"""


@pytest.fixture
def with_rules(store: StateStore, connection_id: str, tmp_path: Path) -> Iterator[Seeded]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "matters.yaml").write_text(MATTERS, encoding="utf-8")
    (rules / "hook.yaml").write_text(HOOK, encoding="utf-8")
    (rules / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    settings = console_settings(
        store, connection_id, rules, webhook_secrets={"intake": SecretStr("intake-secret-0123456789")}
    )
    made = seed(store, connection_id, settings)
    registry = RuleRegistry(settings=settings)
    registry.load()
    made.ops.ruleset = lambda: registry.ruleset
    yield made
    made.ops.app.close()


@pytest.fixture
def http(with_rules: Seeded) -> Iterator[TestClient]:
    with TestClient(build_app(with_rules.ops), follow_redirects=False) as client:
        sign_in(client, "victor")  # a viewer sees the rules too
        yield client


def test_the_rules_page_lists_every_rule_and_every_error(http: TestClient) -> None:
    page = http.get("/rules")
    assert page.status_code == 200
    text = page.text
    assert "3 rule(s) in force from 3 file(s); 1 error(s)" in text
    for expected in [
        'href="/rules/closed-matter"',
        "matters.yaml:2:3",
        "matters updated, changed status, Open → Closed",
        "single",
        'href="/rules/nightly"',
        "schedule 0 2 * * * (America/New_York)",
        "hook.yaml:1:1",
        "webhook intake (verify hmac)",
    ]:
        assert expected in text, expected
    nightly = text[text.index('href="/rules/nightly"') :]
    assert "<td>no</td>" in nightly[: nightly.index("</tr>")]
    # the broken rule, at its file:line:column
    assert "broken.yaml:4:" in text and "typo" in text and "slak.post" in text
    assert "try it" not in text.lower()


def test_a_rules_own_source_on_its_page(http: TestClient) -> None:
    page = http.get("/rules/nightly")
    assert page.status_code == 200
    assert "  15  - id: nightly" in page.text
    assert "trigger: {schedule: &#34;0 2 * * *&#34;" in page.text  # escaped, as every value
    assert "closed-matter" not in page.text.split("<pre", 1)[1]  # only its own lines
    first = http.get("/rules/closed-matter").text
    source = first.split("<pre", 1)[1]
    assert "   2  - id: closed-matter" in source and "nightly" not in source
    whole = http.get("/rules/intake-form").text.split("<pre", 1)[1]
    assert "   1  id: intake-form" in whole and "payload.name" in whole


def test_an_unknown_rule_is_404(http: TestClient) -> None:
    assert http.get("/rules/typo").status_code == 404  # broken: not in force
    assert http.get("/rules/nope").status_code == 404


def test_the_rule_pages_need_a_signed_in_user(with_rules: Seeded) -> None:
    with TestClient(build_app(with_rules.ops), follow_redirects=False) as client:
        assert client.get("/rules/nightly").status_code == 303


def test_without_a_loaded_ruleset_the_page_says_the_counts(seeded: Seeded, client: TestClient) -> None:
    sign_in(client)
    text = client.get("/rules").text
    assert "2 rule(s) in force from 3 file(s); 1 broken." in text


def test_the_shipped_example_rules_all_list(store: StateStore, connection_id: str) -> None:
    from worker.console.ops import rules_page

    repo_rules = Path(__file__).resolve().parents[2] / "rules"
    settings = console_settings(store, connection_id, repo_rules)
    registry = RuleRegistry(settings=settings)
    registry.load()
    listed = rules_page(registry.ruleset)
    assert listed.rules and not listed.errors
    assert {r.id for r in listed.rules} == {r.id for r in registry.ruleset.rules}
    assert all(r.trigger and r.location.count(":") >= 2 for r in listed.rules)
