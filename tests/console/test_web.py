"""The console over Starlette's TestClient on both state backends: signing in, roles, CSRF, rate
limiting, headers, the pages over seeded state, the actions and their audit, and no secret in any
page."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from worker.console.audit import AuditLog
from worker.console.auth import FAILURES_PER_ADDRESS
from worker.polling import held

from .conftest import CLIENT_SECRET, CONSOLE_SECRET, PASSWORD, SLACK_URL, Seeded, csrf_of, sign_in

PAGES = ["/", "/runs", "/runs?status=waiting", "/dead-letters", "/held", "/rules", "/audit", "/login"]


def test_pages_need_a_signed_in_user(client: TestClient) -> None:
    for path in ["/", "/runs", "/dead-letters", "/held", "/audit"]:
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


def test_login_and_logout(client: TestClient) -> None:
    token = sign_in(client)
    page = client.get("/")
    assert page.status_code == 200 and "olga (operator)" in page.text
    cookie = page.request.headers.get("cookie") or ""
    assert "ppw_console=" in cookie
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert client.get("/").status_code == 303


def test_the_session_cookie_is_httponly_strict_and_secure_when_asked(seeded: Seeded) -> None:
    from worker.console.web import Console

    for secure in (False, True):
        app = Console(seeded.ops).app(secure_cookies=secure)
        with TestClient(app, follow_redirects=False) as http:
            set_cookie = http.get("/login").headers["set-cookie"]
            assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
            assert ("Secure" in set_cookie) is secure
    with TestClient(Console(seeded.ops).app(), base_url="https://console.example") as http:
        assert "Secure" in http.get("/login").headers["set-cookie"]  # over TLS, always


def test_wrong_password_and_unknown_user_are_refused(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    for user, password in [("olga", "wrong password!"), ("mallory", PASSWORD)]:
        answer = client.post("/login", data={"csrf": token, "username": user, "password": password})
        assert answer.status_code == 401 and "wrong user name or password" in answer.text
    assert client.get("/").status_code == 303


def test_login_is_rate_limited_per_address_and_user(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    for _ in range(FAILURES_PER_ADDRESS):
        bad = client.post("/login", data={"csrf": token, "username": "olga", "password": "nope nope nope"})
        assert bad.status_code == 401
    # even the right password is refused now
    right = client.post("/login", data={"csrf": token, "username": "olga", "password": PASSWORD})
    assert right.status_code == 429 and "too many failed logins" in right.text
    # another user from the same address is not locked out
    other = client.post("/login", data={"csrf": token, "username": "victor", "password": PASSWORD})
    assert other.status_code == 303


def test_login_without_csrf_is_refused(client: TestClient) -> None:
    client.get("/login")
    answer = client.post("/login", data={"username": "olga", "password": PASSWORD})
    assert answer.status_code == 403


def test_security_headers_on_every_answer(client: TestClient) -> None:
    answers = [client.get("/login"), client.get("/"), client.get("/static/console.css")]
    sign_in(client)
    answers += [client.get(p) for p in PAGES]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert client.get("/").headers["cache-control"] == "no-store"


def test_overview_counts_link_to_their_pages(client: TestClient) -> None:
    sign_in(client)
    page = client.get("/").text
    for link in ['href="/dead-letters"', 'href="/held"', 'href="/runs?status=waiting"', 'href="/rules"']:
        assert link in page
    assert "matters" in page and "5m" in page  # the cursor lag
    assert "ready" in page


def test_runs_list_filters_and_pages(client: TestClient, seeded: Seeded) -> None:
    sign_in(client)
    everything = client.get("/runs").text
    assert all(r.id[:12] in everything for r in (seeded.done, seeded.dead, seeded.waiting))
    waiting = client.get("/runs?status=waiting").text
    assert seeded.waiting.id[:12] in waiting and seeded.done.id[:12] not in waiting
    by_rule = client.get("/runs?rule=create-task").text
    assert seeded.dead.id[:12] in by_rule and seeded.waiting.id[:12] not in by_rule
    by_record = client.get("/runs?record=m-100").text
    assert seeded.done.id[:12] in by_record and seeded.dead.id[:12] not in by_record
    assert client.get("/runs?status=bogus").status_code == 400
    first = seeded.ops.runs(size=2)
    assert first.next is not None and first.previous is None
    second = seeded.ops.runs(after=first.next, size=2)
    assert second.next is None and second.previous is not None
    assert [r.id for r in first.runs + second.runs] == [seeded.waiting.id, seeded.dead.id, seeded.done.id]
    assert [r.id for r in seeded.ops.runs(before=second.previous, size=2).runs] == [r.id for r in first.runs]


def test_a_run_page_shows_the_masked_request_and_the_changes(client: TestClient, seeded: Seeded) -> None:
    sign_in(client)
    page = client.get(f"/runs/{seeded.done.id}").text
    assert "https://hooks.slack.com/[redacted]" in page
    assert "&#34;Authorization&#34;: &#34;[redacted]&#34;" in page
    assert "Matter Estate of Smith is now Closed" in page
    assert "&#34;Open&#34;" in page and "&#34;Closed&#34;" in page  # old → new from the event store
    assert "2 attempt(s)" in page and "120 ms" in page


def test_a_waiting_run_shows_its_wake_time_and_an_operator_cancels_it(
    client: TestClient, seeded: Seeded
) -> None:
    token = sign_in(client)
    page = client.get(f"/runs/{seeded.waiting.id}").text
    assert 'id="wake-at"' in page and "Cancel this waiting run" in page
    answer = client.post(f"/runs/{seeded.waiting.id}/cancel", data={"csrf": token})
    assert answer.status_code == 303
    after = client.get(answer.headers["location"]).text
    assert "cancelled by olga (console)" in after
    assert seeded.ops.app.history.get(seeded.connection, seeded.waiting.id).status == "cancelled"
    assert seeded.ops.app.timers.pending(seeded.connection) == 0
    [entry] = AuditLog(seeded.store, seeded.connection).recent()
    assert (entry.user, entry.action, entry.target, entry.outcome) == (
        "olga",
        "cancel",
        seeded.waiting.id,
        "done",
    )
    assert entry.address == "testclient"
    audit = client.get("/audit").text
    assert "cancel" in audit and seeded.waiting.id in audit


def test_replay_from_the_dead_letters(client: TestClient, seeded: Seeded) -> None:
    token = sign_in(client)
    listing = client.get("/dead-letters").text
    assert seeded.dead.id[:12] in listing and "HTTP 500" in listing
    answer = client.post(f"/dead-letters/{seeded.dead.id}/replay", data={"csrf": token})
    assert answer.status_code == 303
    assert seeded.sent == [(seeded.connection, seeded.dead.id)]
    run = seeded.ops.app.history.get(seeded.connection, seeded.dead.id)
    assert run.status == "queued" and run.replays == 1 and run.rule_version == "v1"
    assert seeded.ops.app.dead_letters.count(seeded.connection) == 0
    again = client.post(f"/dead-letters/{seeded.dead.id}/replay", data={"csrf": token})
    assert again.status_code == 409 and "not dead" in again.text
    outcomes = [e.outcome for e in AuditLog(seeded.store, seeded.connection).recent()]
    assert outcomes == ["failed", "done"]


def test_release_and_discard_held_batches(client: TestClient, seeded: Seeded) -> None:
    token = sign_in(client)
    assert seeded.held_id in client.get("/held").text
    assert client.post(f"/held/{seeded.held_id}/release", data={"csrf": token}).status_code == 303
    assert len(seeded.emitted) == 3 and held.list_held(seeded.store, seeded.connection) == []
    assert client.post(f"/held/{seeded.held_id}/discard", data={"csrf": token}).status_code == 409


def test_a_viewer_sees_but_cannot_act(client: TestClient, seeded: Seeded) -> None:
    token = sign_in(client, "victor")
    assert "Replay" not in client.get("/dead-letters").text.split("<main>")[1]
    for path in [
        f"/dead-letters/{seeded.dead.id}/replay",
        f"/runs/{seeded.waiting.id}/cancel",
        f"/held/{seeded.held_id}/release",
        f"/held/{seeded.held_id}/discard",
    ]:
        answer = client.post(path, data={"csrf": token})
        assert answer.status_code == 403, path
    assert seeded.sent == [] and seeded.ops.app.dead_letters.count(seeded.connection) == 1
    refused = AuditLog(seeded.store, seeded.connection).recent()
    assert len(refused) == 4 and {e.outcome for e in refused} == {"refused"}


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_post_without_the_csrf_token_is_refused(
    client: TestClient, seeded: Seeded, token: str | None
) -> None:
    sign_in(client)
    data = {} if token is None else {"csrf": token}
    answer = client.post(f"/dead-letters/{seeded.dead.id}/replay", data=data)
    assert answer.status_code == 403
    assert seeded.sent == [] and seeded.ops.app.dead_letters.count(seeded.connection) == 1


def test_an_anonymous_post_is_refused(client: TestClient, seeded: Seeded) -> None:
    token = csrf_of(client.get("/login").text)
    assert client.post(f"/runs/{seeded.waiting.id}/cancel", data={"csrf": token}).status_code == 403


def test_a_forged_or_old_session_cookie_is_not_a_login(client: TestClient, seeded: Seeded) -> None:
    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer("not the secret", salt="ppw-console-session").dumps({"u": "olga"})
    client.cookies.set("ppw_console", forged)
    assert client.get("/").status_code == 303
    # signed right but without the fingerprint of the current password hash
    stale = URLSafeTimedSerializer(CONSOLE_SECRET, salt="ppw-console-session").dumps(
        {"u": "olga", "f": "old"}
    )
    client.cookies.set("ppw_console", stale)
    assert client.get("/").status_code == 303


def test_login_redirects_only_within_the_site(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post(
        "/login",
        data={"csrf": token, "username": "olga", "password": PASSWORD, "next": "//evil.example/x"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_no_configured_secret_appears_in_any_page(client: TestClient, seeded: Seeded) -> None:
    sign_in(client)
    paths = [*PAGES, *(f"/runs/{r.id}" for r in (seeded.done, seeded.dead, seeded.waiting))]
    secrets = [SLACK_URL, CLIENT_SECRET, CONSOLE_SECRET, "xoxsecretwebhookpath42", PASSWORD]
    for path in paths:
        body = client.get(path).text
        for secret in secrets:
            assert secret not in body, f"{secret!r} in {path}"
        assert "$argon2" not in body
    assert "[redacted]" in client.get(f"/runs/{seeded.done.id}").text
