"""One real browser (Debian's chromium driven by Playwright): sign in, open a waiting run's page,
cancel it; a screenshot of each page on the way (to ``$PPW_CONSOLE_SCREENSHOTS`` when set, which
is how docs/console/*.png are made). The pages need no JavaScript, but the browser also checks
that the CSP lets the vendored htmx load and that nothing on a page is blocked.

Skipped, with the reason, when Playwright or chromium is missing outside CI; under CI (which
installs chromium) it fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.console.server import ConsoleServer
from worker.console.web import build_app
from worker.state.sqlite import SqliteStore

from .conftest import PASSWORD, SLACK_URL, Seeded, console_settings, seed

CHROMIUM = os.environ.get("PPW_TEST_CHROMIUM", "/usr/bin/chromium")


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: .ci/run)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def served(sqlite_store: SqliteStore, connection_id: str, tmp_path: Path) -> Iterator[tuple[Seeded, str]]:
    rules = tmp_path / "rules"
    rules.mkdir()
    made = seed(sqlite_store, connection_id, console_settings(sqlite_store, connection_id, rules))
    server = ConsoleServer(build_app(made.ops), "127.0.0.1", 0).start()
    yield made, server.url
    server.stop()
    made.ops.app.close()


def test_sign_in_open_a_waiting_run_and_cancel_it(
    browser: Any, served: tuple[Seeded, str], tmp_path: Path
) -> None:
    seeded, url = served
    shots = Path(os.environ.get("PPW_CONSOLE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        assert SLACK_URL not in page.content()

    page.goto(f"{url}/runs/{seeded.waiting.id}")
    assert "/login" in page.url  # not signed in: sent to the login page, and back after
    shot("login")
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/runs/{seeded.waiting.id}")
    assert page.locator("#wake-at").inner_text().startswith("20")
    shot("run-waiting")
    assert page.evaluate("typeof window.htmx") == "object"  # the vendored htmx loaded under the CSP

    page.click("text=Cancel this waiting run")
    page.wait_for_selector(".flash")
    assert "cancelled run" in page.locator(".flash").inner_text()
    assert page.locator(".facts .badge").first.inner_text() == "cancelled"
    assert seeded.ops.app.history.get(seeded.connection, seeded.waiting.id).status == "cancelled"
    shot("run-cancelled")

    page.goto(f"{url}/runs/{seeded.done.id}")
    assert "[redacted]" in page.content()
    shot("run")
    for name, path in [
        ("overview", "/"),
        ("runs", "/runs"),
        ("dead-letters", "/dead-letters"),
        ("held", "/held"),
        ("rules", "/rules"),
        ("audit", "/audit"),
    ]:
        page.goto(url + path)
        shot(name)
    assert "cancel" in page.content() and "olga" in page.content()  # the audit page
    page.goto(f"{url}/runs")
    page.select_option("select[name=status]", "dead")  # htmx swaps the table in place
    page.wait_for_url("**/runs?status=dead*")
    page.wait_for_function("!document.querySelector('#runs').innerText.includes('follow-up')")
    assert seeded.dead.id[:12] in page.locator("#runs").inner_text()
    assert not problems, problems


RULES = """\
- id: closed-matter
  description: "Tell billing when a litigation matter closes"
  trigger: {resource: matters, on: updated, changed: status, from: Open, to: Closed}
  conditions:
    - "'Litigation' in record.tags"
    - record.name.startswith('Whitman')
  steps:
    - id: tell
      type: slack.post
      with: {webhook: billing, text: "{{ record.name }} closed (was {{ changes.status.old }})"}

- id: create-task
  description: "The fixed rule: its step now only logs"
  trigger: {resource: matters, on: updated, changed: status}
  steps:
    - id: task
      type: log
      with: {message: "task for {{ record.id }}"}
"""


@pytest.fixture
def worked(
    sqlite_store: SqliteStore, connection_id: str, tmp_path: Path, sandbox: Any
) -> Iterator[tuple[Seeded, str]]:
    """The console over the sandbox, with rules loaded and a runner that takes replayed runs at once
    (the delivery runner a ``ppw run`` worker runs, in this process)."""
    from tests.fixtures.client import connect
    from worker.delivery.runner import Runner
    from worker.rules.watcher import RuleRegistry

    from .conftest import sandbox_console_settings

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "matters.yaml").write_text(RULES, encoding="utf-8")
    settings = sandbox_console_settings(sqlite_store, connection_id, rules, sandbox)
    connect(settings, sqlite_store)
    made = seed(sqlite_store, connection_id, settings)
    registry = RuleRegistry(settings=settings)
    registry.load()
    made.ops.ruleset = lambda: registry.ruleset
    runner = Runner(made.ops.app)

    def send_run(connection: str, run_id: str) -> None:
        made.sent.append((connection, run_id))
        runner.run(connection, run_id)

    made.ops.send_run = send_run
    server = ConsoleServer(build_app(made.ops), "127.0.0.1", 0).start()
    yield made, server.url
    server.stop()
    made.ops.app.close()


def test_try_a_rule_on_a_live_record_then_replay_all_dead_letters(
    browser: Any, worked: tuple[Seeded, str], sandbox_admin: Any, tmp_path: Path
) -> None:
    from tests.fixtures.client import SandboxAdmin
    from worker.practicepanther.client import PracticePantherClient

    from .conftest import open_matter, polled
    from .test_replay import add_dead

    seeded, url = worked
    admin: SandboxAdmin = sandbox_admin
    shots = Path(os.environ.get("PPW_CONSOLE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    matter = open_matter(admin, "Garner Estate")  # polled while open, closed since
    with PracticePantherClient(seeded.settings, seeded.store) as client:
        polled(seeded, client.get("matters", matter["id"]))
    admin.mutate([{"op": "update", "resource": "matters", "id": matter["id"], "data": {"status": "Closed"}}])

    page.goto(f"{url}/rules/closed-matter")
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/rules/closed-matter")
    mark = admin.mark()
    page.fill("input[name=record_id]", matter["id"])
    page.click("form.tryit button[type=submit]")
    page.wait_for_selector("#verdict")
    verdict = page.locator("#verdict").inner_text()
    assert verdict == "✘ does not fire: condition \"record.name.startswith('Whitman')\" is False", verdict
    failed = page.locator("#conditions li.failed").inner_text()
    assert "record.name.startswith('Whitman')" in failed and "false" in failed
    assert "Garner Estate closed (was Open)" in page.locator("#tried").inner_text()
    assert {c["method"] for c in admin.requests(mark)["requests"]} == {"GET"}
    assert seeded.sent == []
    page.screenshot(path=str(shots / "rule-try.png"), full_page=True)
    assert SLACK_URL not in page.content()

    add_dead(seeded, "m-201")
    add_dead(seeded, "m-202")
    dead = [r.id for r in seeded.ops.dead_letters()]
    assert len(dead) == 3
    page.goto(f"{url}/dead-letters")
    page.select_option(".replay-all select[name=version]", "current")
    page.click("text=Replay all 3")
    page.wait_for_selector("#confirm-replay-all")
    assert "Replay 3 dead letter(s)?" in page.locator("h1").inner_text()
    page.click("#confirm-replay-all")
    page.wait_for_selector(".flash")
    assert "replayed 3 dead letter(s) with the current rule" in page.locator(".flash").inner_text()
    assert "The dead-letter store is empty." in page.content()
    for run_id in dead:
        page.goto(f"{url}/runs/{run_id}")
        assert page.locator(".facts .badge").first.inner_text() == "succeeded", run_id
    page.goto(f"{url}/audit")
    assert page.content().count(">replay<") >= 3 and "replay all" in page.content()
    assert not problems, problems
