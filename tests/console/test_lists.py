"""The console's lists on both backends: the Runs filters (status and ``failed``, rule, resource,
record id, time), cursor paging of runs and dead letters, filters that do not parse, and the
Rules page's last fired and runs in the last day."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from worker.console.web import build_app
from worker.delivery.history import EventSummary, Run
from worker.rules.watcher import RuleRegistry
from worker.state.base import StateStore

from .conftest import Seeded, console_settings, seed, sign_in

RULES = """\
- id: notify-billing
  trigger: {resource: matters, on: updated}
  steps: [{type: log, with: {message: "{{ record.id }}"}}]
- id: quiet-rule
  trigger: {resource: contacts, on: created}
  steps: [{type: log, with: {message: hi}}]
"""
LINK = re.compile(r'<a href="([^"]+)" rel="(next|prev)">')


@pytest.fixture
def seeded_rules(store: StateStore, connection_id: str, tmp_path: Path) -> Iterator[Seeded]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(RULES, encoding="utf-8")
    made = seed(store, connection_id, console_settings(store, connection_id, rules))
    registry = RuleRegistry(settings=made.settings)
    registry.load()
    made.ops.ruleset = lambda: registry.ruleset
    yield made
    made.ops.app.close()


@pytest.fixture
def http(seeded_rules: Seeded) -> Iterator[TestClient]:
    with TestClient(build_app(seeded_rules.ops), follow_redirects=False) as client:
        sign_in(client, "victor")
        yield client


def _add(seeded: Seeded, n: int, *, resource: str = "contacts", status: str = "succeeded",
         rule: str = "quiet-rule", age: float = 0.0) -> Run:  # fmt: skip
    run = Run(
        id=f"extra{n:07d}",
        connection=seeded.connection,
        event_id=f"extra-event-{n}",
        event=EventSummary(type="created", resource=resource, record_id=f"c-{n}", revision="1"),
        rule_id=rule,
        rule_version="v1",
        status=status,  # type: ignore[arg-type]
        created_at=time.time() - age,
    )
    seeded.ops.app.history.create(run)
    return run


def _links(html: str) -> dict[str, str]:
    return {rel: href.replace("&amp;", "&") for href, rel in LINK.findall(html)}


def test_runs_filter_by_resource_time_and_failed(http: TestClient, seeded_rules: Seeded) -> None:
    s = seeded_rules
    contact = _add(s, 1, age=3 * 86_400)
    retrying = _add(s, 2, resource="matters", status="retrying", rule="notify-billing", age=5)

    by_resource = http.get("/runs?resource=contacts").text
    assert contact.id[:12] in by_resource and s.done.id[:12] not in by_resource
    failed = http.get("/runs?status=failed").text
    assert retrying.id[:12] in failed and s.dead.id[:12] in failed and s.done.id[:12] not in failed
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3 * 86_400))
    older = http.get(f"/runs?until={day}T23:59").text
    assert contact.id[:12] in older and s.done.id[:12] not in older
    recent = http.get(f"/runs?since={day}T23:59&resource=matters").text
    assert s.done.id[:12] in recent and retrying.id[:12] in recent and contact.id[:12] not in recent
    # the form keeps what was asked
    assert 'name="resource" value="matters"' in recent and f'value="{day}T23:59"' in recent


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "since: &#39;yesterday&#39; is not a date or time"),
        ("since=2026-03-02&until=2026-03-01", "since is after until"),
        ("after=garbage", "after: &#39;garbage&#39; is not a list position"),
        ("status=bogus", "unknown status &#39;bogus&#39;"),
        ("rule=" + "x" * 300, "rule: longer than 200 characters"),
    ],
)
def test_a_filter_that_does_not_parse_is_a_clear_400(http: TestClient, query: str, message: str) -> None:
    answer = http.get(f"/runs?{query}")
    assert answer.status_code == 400 and message in answer.text


def test_runs_page_by_cursor_both_ways(http: TestClient, seeded_rules: Seeded) -> None:
    extra = [_add(seeded_rules, n, age=100 + n) for n in range(120)]
    first = http.get("/runs?resource=contacts").text
    assert first.count('<tr class="status-') == 50 and "prev" not in _links(first)
    second = http.get(_links(first)["next"]).text
    third = http.get(_links(second)["next"]).text
    assert third.count('<tr class="status-') == 20 and "next" not in _links(third)
    shown = [m for page in (first, second, third) for m in re.findall(r'href="/runs/(extra\d+)"', page)]
    assert shown == [r.id for r in extra]  # newest (least aged) first, each once
    assert "resource=contacts" in _links(second)["next"]  # the filters stay
    back = http.get(_links(third)["prev"]).text
    assert re.findall(r'href="/runs/(extra\d+)"', back) == re.findall(r'href="/runs/(extra\d+)"', second)


def test_dead_letters_page_oldest_first(http: TestClient, seeded_rules: Seeded) -> None:
    s = seeded_rules
    dead = []
    for n in range(55):
        run = _add(s, n, status="running", age=50 - n)
        dead.append(s.ops.app.dead_letters.add(run, f"failure {n}", failed_step="tell"))
    first = http.get("/dead-letters").text
    listed = re.findall(r'href="/runs/([0-9a-z]+)"', first)
    assert listed == [s.dead.id] + [r.id for r in dead[:49]]
    second = http.get(_links(first)["next"]).text
    assert re.findall(r'href="/runs/([0-9a-z]+)"', second) == [r.id for r in dead[49:]]
    by_rule = http.get("/dead-letters?rule=create-task").text
    assert re.findall(r'href="/runs/([0-9a-z]+)"', by_rule) == [s.dead.id]


def test_rules_page_shows_last_fired_and_runs_in_the_last_day(http: TestClient, seeded_rules: Seeded) -> None:
    _add(seeded_rules, 1, rule="notify-billing", resource="matters", age=2 * 86_400)
    page = http.get("/rules").text
    billing = page[page.index('href="/rules/notify-billing"') :]
    row = billing[: billing.index("</tr>")]
    assert re.search(r'<a href="/runs\?rule=notify-billing">\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ</a>', row)
    assert '<a href="/runs?rule=notify-billing">1</a>' in row  # the seeded run; not the one of 2 days ago
    quiet = page[page.index('href="/rules/quiet-rule"') :]
    assert "never" in quiet[: quiet.index("</tr>")]


def test_pages_over_a_store_from_before_the_indexes(store: StateStore, seeded_rules: Seeded) -> None:
    """An older ppw's store (no run indexes, no marker): the first list builds them."""
    s = seeded_rules
    for found in [*store.scan(f"ppw:{s.connection}:runs-by"), f"ppw:{s.connection}:runs-attrs"]:
        store.delete(found)
    store.delete(f"ppw:{s.connection}:indexed:runs")
    with TestClient(build_app(s.ops), follow_redirects=False) as http:
        sign_in(http, "victor")
        by_rule = http.get("/runs?rule=create-task&status=dead").text
        assert s.dead.id[:12] in by_rule and s.done.id[:12] not in by_rule
        assert s.waiting.id[:12] in http.get("/runs?status=waiting").text
    assert store.get(f"ppw:{s.connection}:indexed:runs") is not None
