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
