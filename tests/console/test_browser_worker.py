"""A new operator's session in a real browser against a real ``ppw run``: the worker is a child
process started as a user starts it (embedded defaults: SQLite in ``tmp_path``, the memory broker,
the sandbox over HTTP, ``PPW_CONSOLE_ENABLED=true``, users given as argon2 hashes printed by
``ppw console hash-password``), and every change is made in the sandbox the way a person would
(``/_sandbox/mutate``), so the runs on the pages are the worker's own.

In order: pages without a session go to the login page; the operator signs in and reads a run's
trace (old → new); replays a dead letter after the receiver is fixed and sees the worker finish it;
releases a batch held by the flood limit and sees its runs; cancels a waiting run; a viewer sees no
buttons and is refused a replay posted with their own CSRF token; a form posted without its token
is refused; both refusals are in the audit trail and the worker's log; and no page, response or
log line carries a configured secret. Screenshots to ``$PPW_CONSOLE_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import eventually
from tests.e2e.test_ppw_run import PPW, embedded_env
from tests.fixtures.client import SandboxAdmin, free_port
from tests.fixtures.stubs import Reply, StubServer
from worker.sandbox import SandboxServer

from .test_browser import browser  # noqa: F401  (the fixture)

FLOOD_LIMIT = 3
PASSWORDS = {"olga": "olga's long console passphrase", "victor": "victor reads but never replays"}
ROLES = {"olga": "operator", "victor": "viewer"}

RULES = """\
- id: closed-matter
  description: Tell billing when a matter closes
  trigger: {{resource: matters, on: updated, changed: status, to: Closed}}
  steps:
    - id: tell
      type: slack.post
      with: {{webhook: billing, text: "{{{{record.display_name}}}} closed, was {{{{ changes.status.old}}}}"}}

- id: push-pending
  description: Tell the billing system a matter is pending
  trigger: {{resource: matters, on: updated, changed: status, to: Pending}}
  steps:
    - id: push
      type: http.request
      with: {{url: "{receiver}/matters", json: {{matter: "{{{{ record.id }}}}"}}}}

- id: archive-later
  description: A week after a matter is archived, note it
  trigger: {{resource: matters, on: updated, changed: status, to: Archived}}
  steps:
    - id: later
      type: wait
      with: {{for: "7 days"}}
    - id: note
      type: log
      with: {{message: "{{{{ record.display_name }}}} was archived a week ago"}}

- id: contact-changed
  description: Note every changed contact
  trigger: {{resource: contacts, on: updated}}
  steps:
    - id: note
      type: log
      with: {{message: "contact {{{{ record.id }}}} changed"}}
"""


@dataclass
class Worker:
    """The running ``ppw run`` and what the test configured it with."""

    url: str
    admin: SandboxAdmin
    receiver: StubServer
    #: the status the receiver answers ``http.request`` with (400 until the test fixes it)
    receiver_status: list[int]
    matters: dict[str, dict[str, Any]]
    contacts: list[dict[str, Any]]
    #: every configured secret, by what it is
    secrets: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]
    bodies: list[tuple[str, str]] = field(default_factory=list)
    #: HTML responses the browser navigated away from before their body could be read
    unread: list[str] = field(default_factory=list)


def _hash(password: str) -> subprocess.Popen[bytes]:
    """``ppw console hash-password`` as an operator runs it, the password on stdin."""
    process = subprocess.Popen(
        [PPW, "console", "hash-password"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(password.encode() + b"\n")
    process.stdin.close()
    return process


def _hashed(running: subprocess.Popen[bytes]) -> str:
    assert running.stdout is not None
    hashed = running.stdout.read().decode().strip()
    assert running.wait(timeout=60) == 0
    assert hashed.startswith("$argon2"), hashed
    return hashed


def _seed_records(admin: SandboxAdmin) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Matters and contacts of one client, there before the worker primes on them."""
    account = admin.mutate([{"op": "create", "resource": "accounts", "data": {"company_name": "Whitman"}}])[0]
    ref = {"id": account["id"]}
    names = {
        "closing": "Estate of Whitman",
        "pending": "Whitman v. Garner",
        "stuck": "Whitman Trust",
        "archiving": "Whitman Lease",
    }
    made = admin.mutate(
        [
            {"op": "create", "resource": "matters", "data": {"name": n, "status": "Open", "account_ref": ref}}
            for n in names.values()
        ]
    )
    contacts = admin.mutate(
        [
            {
                "op": "create",
                "resource": "contacts",
                "data": {"first_name": f"Ann{i}", "last_name": "Whitman", "account_ref": ref},
            }
            for i in range(FLOOD_LIMIT + 1)
        ]
    )
    return dict(zip(names, made, strict=True)), contacts


def _polled_twice(admin: SandboxAdmin, since: int, resources: tuple[str, ...]) -> bool:
    paths = [r["path"] for r in admin.requests(since)["requests"]]
    return all(paths.count(f"/api/v2/{name}") >= 2 for name in resources)


def _answers(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    assert process.poll() is None, log.read_text()
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError):
        return False


@pytest.fixture
def worker(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> Iterator[Worker]:
    hashing = {name: _hash(password) for name, password in PASSWORDS.items()}
    status = [400]
    receiver = StubServer()
    receiver.route("/matters", lambda _r: Reply(status=status[0], body={"ok": status[0] < 300}))
    receiver.start()
    admin = SandboxAdmin(sandbox.url)
    matters, contacts = _seed_records(admin)
    env, _database = embedded_env(
        sandbox, slack_stub, tmp_path, connection_id, RULES.format(receiver=receiver.url)
    )
    hashes = {name: _hashed(running) for name, running in hashing.items()}
    port = free_port()
    console_secret = secrets.token_hex(32)
    env |= {
        "PPW_CONSOLE_ENABLED": "true",
        "PPW_CONSOLE_PORT": str(port),
        "PPW_CONSOLE_SECRET": console_secret,
        "PPW_FLOOD_LIMIT": str(FLOOD_LIMIT),
        # A step still running at the SIGTERM gets this long; the test waits for the exit beyond it.
        "PPW_SHUTDOWN_GRACE": "5",
        "PPW_HTTP_ALLOWED_HOSTS": urlsplit(receiver.url).netloc,
    } | {f"PPW_CONSOLE_USERS__{name.upper()}": f"{ROLES[name]}:{h}" for name, h in hashes.items()}
    log = tmp_path / "ppw-run.log"
    since = admin.mark()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PPW, "run", "--http-port", "0", "--threads", "2"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _answers(f"{url}/login", process, log), timeout=30, message="the console")
        eventually(
            lambda: _polled_twice(admin, since, ("matters", "contacts")), timeout=30, message="two polls"
        )
        yield Worker(
            url=url,
            admin=admin,
            receiver=receiver,
            receiver_status=status,
            matters=matters,
            contacts=contacts,
            secrets={
                "PracticePanther client secret": env["PPW_PP_CLIENT_SECRET"],
                "console secret": console_secret,
                "Slack webhook URL": env["PPW_SLACK_WEBHOOKS__BILLING"],
                "Slack webhook path": urlsplit(env["PPW_SLACK_WEBHOOKS__BILLING"]).path,
                **{f"{name}'s password hash": h for name, h in hashes.items()},
                **{f"{name}'s password": p for name, p in PASSWORDS.items()},
            },
            log=log,
            process=process,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            receiver.stop()
            admin.http.close()
    assert process.returncode == 0, log.read_text()[-4000:]


def _until(page: Any, check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Reload ``page`` until ``check()`` holds (the worker does its part meanwhile)."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {page.url}"
        page.wait_for_timeout(250)  # a reload's pace, not a wait for the result
        page.reload()
    return found


def _sign_in(page: Any, worker: Worker, user: str, then: str) -> None:
    """From any page: go to ``then``, land on the login page, sign in, and come back to it."""
    page.goto(worker.url + then)
    assert urlsplit(page.url).path == "/login"
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_url(worker.url + then)
    assert f"{user} ({ROLES[user]})" in page.locator("form.who").inner_text()


def _sign_out(page: Any) -> None:
    page.click("form.who button[type=submit]")
    page.wait_for_url("**/login")


def _badge(page: Any) -> str:
    text: str = page.locator(".facts .badge").first.inner_text()
    return text


def test_a_new_operator_against_a_running_worker(
    browser: Any,  # noqa: F811
    worker: Worker,
    tmp_path: Path,
) -> None:
    shots = Path(os.environ.get("PPW_CONSOLE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    headers: list[tuple[str, dict[str, str]]] = []

    def keep(response: Any) -> None:
        headers.append((response.url, {k: v for k, v in response.headers.items() if k != "set-cookie"}))
        if not 300 <= response.status < 400 and "text/html" in response.headers.get("content-type", ""):
            try:
                worker.bodies.append((response.url, response.text()))
            except Exception:  # playwright's Error: the page moved on before the body was read
                worker.unread.append(response.url)

    page.on("response", keep)
    cookies: set[str] = set()

    def session_cookie() -> None:
        cookies.update(c["value"] for c in context.cookies() if c["name"] == "ppw_console")

    def shot(name: str) -> None:
        if os.environ.get("PPW_CONSOLE_SCREENSHOTS"):
            page.screenshot(path=str(shots / f"worker-{name}.png"), full_page=True)

    def posted(path: str, form: dict[str, str]) -> Any:
        answer = page.request.post(worker.url + path, form=form, max_redirects=0)
        worker.bodies.append((f"POST {path}", answer.text()))
        return answer

    matters, admin = worker.matters, worker.admin

    # 1. no session: every page goes to the login page; an action is refused
    for path in ("/", "/runs", "/dead-letters", "/held", "/rules", "/audit", "/runs/nonexistent"):
        page.goto(worker.url + path)
        assert urlsplit(page.url).path == "/login", path
    assert posted("/held/any/release", {"csrf": "x"}).status == 403
    shot("login")

    # 2. the operator signs in; a matter closes in PracticePanther; its run's trace shows old → new
    _sign_in(page, worker, "olga", "/")
    session_cookie()
    closing = matters["closing"]
    admin.mutate([{"op": "update", "resource": "matters", "id": closing["id"], "data": {"status": "Closed"}}])
    page.click("nav >> text=Runs")
    row = page.locator("table.runs tbody tr", has_text="closed-matter")
    _until(page, lambda: row.count() == 1, "the closed matter's run")
    assert closing["id"] in row.inner_text()
    row.locator("a").first.click()
    page.wait_for_url("**/runs/*")
    _until(page, lambda: _badge(page) == "succeeded", "the run to succeed")
    change = page.locator("table.changes tbody tr", has_text="status").inner_text()
    assert "Open" in change and "→" in change and "Closed" in change, change
    assert change.index("Open") < change.index("Closed")
    sent = page.locator(".step pre.request").inner_text()
    assert "Estate of Whitman closed, was Open" in sent and '"webhook": "billing"' in sent, sent
    shot("run")

    # 3. two matters go pending; the receiver answers 400, so both runs are dead letters
    pending, stuck = matters["pending"], matters["stuck"]
    admin.mutate(
        [
            {"op": "update", "resource": "matters", "id": m["id"], "data": {"status": "Pending"}}
            for m in (pending, stuck)
        ]
    )
    page.click("nav >> text=Dead letters")
    dead_rows = page.locator("main table tbody tr")
    _until(page, lambda: dead_rows.count() == 2, "two dead letters")
    row = page.locator("main table tbody tr", has_text=pending["id"])
    assert "push-pending" in row.inner_text() and "400" in row.inner_text(), row.inner_text()
    stuck_run = page.locator("main table tbody tr", has_text=stuck["id"]).locator("a").first
    stuck_id = (stuck_run.get_attribute("href") or "").rsplit("/", 1)[-1]
    shot("dead-letters")
    worker.receiver_status[0] = 200  # the receiver is fixed
    row.locator("button[value=original]").click()
    page.wait_for_url("**/runs/*")
    assert "replaying run" in page.locator(".flash").inner_text()
    _until(page, lambda: _badge(page) == "succeeded", "the replayed run to succeed")
    assert "replayed 1 time(s)" in page.locator(".facts").inner_text()
    answered = [r.status for r in worker.receiver.received("/matters") if pending["id"].encode() in r.body]
    assert answered == [400, 200]
    shot("replayed")

    # 4. a burst of contact changes over the flood limit is held; released, its runs appear
    admin.mutate(
        [
            {"op": "update", "resource": "contacts", "id": c["id"], "data": {"notes": f"moved {i}"}}
            for i, c in enumerate(worker.contacts)
        ]
    )
    page.click("nav >> text=Held batches")
    batch = page.locator("main table tbody tr", has_text="contacts")
    _until(page, lambda: batch.count() == 1, "the held batch")
    assert f"updated {FLOOD_LIMIT + 1}" in batch.inner_text()
    shot("held")
    batch.locator("text=Release").click()
    page.wait_for_url("**/held")
    assert f"{FLOOD_LIMIT + 1} event(s) sent to the rules" in page.locator(".flash").inner_text()
    assert "No batch is held." in page.content()
    page.goto(f"{worker.url}/runs?rule=contact-changed&status=succeeded")
    released = page.locator("table.runs tbody tr")
    _until(page, lambda: released.count() == len(worker.contacts), "the released batch's runs")
    assert {c["id"] for c in worker.contacts} <= set(page.locator("table.runs").inner_text().split())

    # 5. an archived matter makes a waiting run; cancelled from its page
    archiving = matters["archiving"]
    admin.mutate(
        [{"op": "update", "resource": "matters", "id": archiving["id"], "data": {"status": "Archived"}}]
    )
    page.goto(f"{worker.url}/runs?status=waiting")
    row = page.locator("table.runs tbody tr", has_text="archive-later")
    _until(page, lambda: row.count() == 1, "the waiting run")
    row.locator("a").first.click()
    page.wait_for_url("**/runs/*")
    assert page.locator("#wake-at").inner_text().startswith("20")
    shot("run-waiting")
    page.click("text=Cancel this waiting run")
    page.wait_for_selector(".flash")
    assert "cancelled run" in page.locator(".flash").inner_text()
    assert _badge(page) == "cancelled"
    session_cookie()

    # 6. a viewer sees the dead letter but no buttons, and a replay they post is refused
    _sign_out(page)
    _sign_in(page, worker, "victor", "/dead-letters")
    session_cookie()
    assert page.locator("main table tbody tr", has_text=stuck["id"]).count() == 1
    assert page.locator("main form[method=post]").count() == 0, page.locator("main").inner_text()
    page.goto(f"{worker.url}/runs/{stuck_id}")
    assert _badge(page) == "dead" and page.locator("main form[method=post]").count() == 0
    token = page.locator("form.who input[name=csrf]").input_value()
    refused = posted(f"/dead-letters/{stuck_id}/replay", {"csrf": token, "version": "original"})
    assert refused.status == 403 and "victor is a viewer" in refused.text(), refused.text()
    page.reload()
    assert _badge(page) == "dead"

    # 7. the operator again: a form posted without its CSRF token, or with another's, is refused
    _sign_out(page)
    _sign_in(page, worker, "olga", "/audit")
    session_cookie()
    for form in ({"version": "original"}, {"csrf": token, "version": "original"}):
        refused = posted(f"/dead-letters/{stuck_id}/replay", form)
        assert refused.status == 403 and "CSRF" in refused.text(), refused.text()
    page.goto(f"{worker.url}/runs/{stuck_id}")
    assert _badge(page) == "dead"
    page.goto(f"{worker.url}/audit")
    audit = page.locator("main table tbody")
    assert audit.locator("tr", has_text="victor (viewer)").filter(has_text="refused").count() == 1
    assert audit.locator("tr", has_text="olga (operator)").filter(has_text="refused").count() == 2
    assert audit.locator("tr", has_text="olga (operator)").filter(has_text="done").count() == 3
    shot("audit")
    session_cookie()
    logged = worker.log.read_text()
    assert f"console replay of {stuck_id} by victor (viewer) from 127.0.0.1: refused" in logged

    # 8. no page, response or log line carried a configured secret
    assert not problems, problems
    assert len(worker.bodies) > 20 and cookies
    assert len(worker.unread) < len(worker.bodies) // 4, worker.unread
    found = {f"session cookie {i}": c for i, c in enumerate(sorted(cookies))} | worker.secrets
    for what, secret in found.items():
        for where, body in worker.bodies:
            assert secret not in body, f"{what} in {where}"
        for where, sent in headers:
            assert all(secret not in v for v in sent.values()), f"{what} in a header of {where}"
        assert secret not in logged, f"{what} in the worker's log"
    context.close()
