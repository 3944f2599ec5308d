"""Signing in through an authenticating reverse proxy's trusted header: only from a trusted peer
address (the socket's, not X-Forwarded-For), with the mapped role, CSRF as after a login, audited
"via proxy"; and the settings that cannot be safe refused."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from worker.console.audit import AuditLog
from worker.console.auth import ConsoleConfigError, check_config, parse_proxy
from worker.console.web import build_app
from worker.state.base import StateStore

from .conftest import CONSOLE_SECRET, Seeded, console_settings, csrf_of, seed, sign_in

PROXY = "10.0.0.5"
HEADER = "X-Forwarded-User"


@pytest.fixture
def proxied(
    store: StateStore, connection_id: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Seeded]:
    rules = tmp_path / "rules"
    rules.mkdir()
    extra: dict[str, object] = {
        "console_trusted_header": HEADER,
        "console_trusted_proxies": ["10.0.0.0/29", "192.168.1.1"],
        "console_proxy_roles": {"olivia": "operator", "vera": "viewer"},
    }
    extra.update(getattr(request, "param", {}))
    made = seed(store, connection_id, console_settings(store, connection_id, rules, **extra))
    yield made
    made.ops.app.close()


def client_from(seeded: Seeded, address: str) -> TestClient:
    return TestClient(build_app(seeded.ops), follow_redirects=False, client=(address, 40000))


def test_a_trusted_proxy_signs_the_user_in_with_the_mapped_role(proxied: Seeded) -> None:
    with client_from(proxied, PROXY) as http:
        page = http.get("/", headers={HEADER: "Olivia"})
        assert page.status_code == 200 and "olivia (operator, via proxy)" in page.text
        assert "ppw_console=" in page.headers["set-cookie"]  # a session, for the CSRF token
        assert "Sign out" not in page.text  # the proxy signs out, not the console
        viewer = http.get("/", headers={HEADER: "vera"})
        assert viewer.status_code == 200 and "vera (viewer, via proxy)" in viewer.text
        # not in the map: the default role (viewer)
        other = http.get("/runs", headers={HEADER: "someone"})
        assert other.status_code == 200 and "someone (viewer, via proxy)" in other.text


def test_the_header_from_an_untrusted_peer_is_ignored_and_logged_once(
    proxied: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.console.web")
    with client_from(proxied, "10.0.0.9") as http:
        for _ in range(3):
            answer = http.get("/", headers={HEADER: "olivia"})
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        # X-Forwarded-For naming the proxy changes nothing: only the socket's peer counts
        spoofed = http.get("/", headers={HEADER: "olivia", "X-Forwarded-For": PROXY})
        assert spoofed.status_code == 303
    ignored = [r for r in caplog.records if "not in PPW_CONSOLE_TRUSTED_PROXIES" in r.getMessage()]
    assert len(ignored) == 1 and "10.0.0.9" in ignored[0].getMessage()


def test_loopback_forwarding_does_not_make_a_client_a_trusted_proxy(proxied: Seeded) -> None:
    """A same-host proxy passing a client's X-Forwarded-For on: the audit sees that address, but the
    peer (127.0.0.1) is not a trusted proxy, so its header is ignored."""
    with client_from(proxied, "127.0.0.1") as http:
        answer = http.get("/", headers={HEADER: "olivia", "X-Forwarded-For": PROXY})
        assert answer.status_code == 303


def test_no_header_from_the_trusted_proxy_means_the_login_page(proxied: Seeded) -> None:
    with client_from(proxied, "192.168.1.1") as http:
        answer = http.get("/")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        assert http.get("/", headers={HEADER: "  "}).status_code == 303
        # password login keeps working beside the proxy
        sign_in(http)
        assert "olga (operator)" in http.get("/").text


def test_a_proxy_session_does_not_work_without_the_proxy(proxied: Seeded) -> None:
    with client_from(proxied, PROXY) as via:
        assert via.get("/", headers={HEADER: "olivia"}).status_code == 200
        cookies = dict(via.cookies)
    with TestClient(
        build_app(proxied.ops), follow_redirects=False, client=("10.0.0.9", 1), cookies=cookies
    ) as direct:
        assert direct.get("/").status_code == 303


@pytest.mark.parametrize("proxied", [{"console_proxy_default_role": "none"}], indirect=True)
def test_default_role_none_refuses_unknown_users(proxied: Seeded) -> None:
    with client_from(proxied, PROXY) as http:
        answer = http.get("/", headers={HEADER: "mallory"})
        assert answer.status_code == 403 and "mallory has no role" in answer.text
        assert http.get("/", headers={HEADER: "olivia"}).status_code == 200


def test_an_operator_via_the_proxy_cancels_and_replays_with_csrf(proxied: Seeded) -> None:
    who = {HEADER: "olivia"}
    with client_from(proxied, PROXY) as http:
        token = csrf_of(http.get("/", headers=who).text)
        refused = http.post(f"/runs/{proxied.waiting.id}/cancel", data={"csrf": "wrong"}, headers=who)
        assert refused.status_code == 403
        done = http.post(f"/runs/{proxied.waiting.id}/cancel", data={"csrf": token}, headers=who)
        assert done.status_code == 303
        assert proxied.ops.app.history.get(proxied.connection, proxied.waiting.id).status == "cancelled"
        replayed = http.post(f"/dead-letters/{proxied.dead.id}/replay", data={"csrf": token}, headers=who)
        assert replayed.status_code == 303 and proxied.sent
        audit_page = http.get("/audit", headers=who).text
        assert "olivia (operator, via proxy)" in audit_page
    entries = AuditLog(proxied.store, proxied.connection).recent()
    assert {(e.user, e.via, e.action, e.outcome) for e in entries} >= {
        ("olivia", "proxy", "cancel", "done"),
        ("olivia", "proxy", "replay", "done"),
        ("olivia", "proxy", "cancel", "refused"),
    }


def test_a_viewer_via_the_proxy_cannot_act(proxied: Seeded) -> None:
    who = {HEADER: "vera"}
    with client_from(proxied, PROXY) as http:
        token = csrf_of(http.get("/", headers=who).text)
        answer = http.post(f"/runs/{proxied.waiting.id}/cancel", data={"csrf": token}, headers=who)
        assert answer.status_code == 403 and "vera is a viewer" in answer.text


def test_x_forwarded_for_from_the_trusted_proxy_is_the_audited_address(proxied: Seeded) -> None:
    who = {HEADER: "olivia", "X-Forwarded-For": "203.0.113.7, 10.0.0.4"}
    with client_from(proxied, PROXY) as http:
        token = csrf_of(http.get("/", headers=who).text)
        http.post(f"/runs/{proxied.waiting.id}/cancel", data={"csrf": token}, headers=who)
    (entry,) = AuditLog(proxied.store, proxied.connection).recent()
    assert entry.address == "203.0.113.7"


def _settings(tmp_path: Path, **extra: object) -> object:
    from worker.settings import Settings

    values: dict[str, object] = {
        "state_url": f"sqlite:///{tmp_path / 'state.db'}",
        "console_secret": SecretStr(CONSOLE_SECRET),
        "console_trusted_header": HEADER,
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "PPW_CONSOLE_TRUSTED_PROXIES is empty"),
        ({"console_trusted_proxies": ["proxy.internal"]}, "not an IP address or CIDR"),
        ({"console_trusted_proxies": ["0.0.0.0/0"]}, "not every address"),
        ({"console_trusted_proxies": ["10.0.0.5"], "console_proxy_roles": {"al": "admin"}}, "ROLES__AL"),
        ({"console_trusted_proxies": ["10.0.0.5"], "console_proxy_default_role": "root"}, "DEFAULT_ROLE"),
        ({"console_trusted_proxies": ["10.0.0.5"], "console_trusted_header": "X User:"}, "not a header"),
    ],
)
def test_unsafe_proxy_settings_are_refused(tmp_path: Path, extra: dict[str, object], message: str) -> None:
    settings = _settings(tmp_path, **extra)
    with pytest.raises(ConsoleConfigError, match=message):
        check_config(settings)  # type: ignore[arg-type]


def test_the_proxy_alone_is_enough_users(tmp_path: Path) -> None:
    settings = _settings(tmp_path, console_trusted_proxies=["10.0.0.5"])
    check_config(settings)  # type: ignore[arg-type]  # no password user needed
    proxy = parse_proxy(settings)  # type: ignore[arg-type]
    assert proxy is not None and proxy.trusts("10.0.0.5") and not proxy.trusts("10.0.0.6")
    assert proxy.trusts("::ffff:10.0.0.5") and not proxy.trusts(None) and not proxy.trusts("testclient")


def test_proxy_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.settings import Settings

    monkeypatch.setenv("PPW_CONSOLE_TRUSTED_HEADER", HEADER)
    monkeypatch.setenv("PPW_CONSOLE_TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16")
    monkeypatch.setenv("PPW_CONSOLE_PROXY_ROLES__ALICE", "operator")
    monkeypatch.setenv("PPW_CONSOLE_PROXY_DEFAULT_ROLE", "none")
    settings = Settings(_env_file=None)
    assert settings.console_trusted_proxies == ["10.0.0.5", "10.1.0.0/16"]
    proxy = parse_proxy(settings)
    assert proxy is not None and proxy.roles == {"alice": "operator"} and proxy.default_role is None
    assert proxy.user("Alice") is not None and proxy.user("bob") is None


def test_x_forwarded_for_from_loopback_is_still_the_audited_address(proxied: Seeded) -> None:
    """A same-host TLS proxy (127.0.0.1) forwarding for a password user, as before the proxy mode."""
    with client_from(proxied, "127.0.0.1") as http:
        over_tls = http.get("/login", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in over_tls.headers["set-cookie"]
        http.cookies.clear()
        http.headers.update({"X-Forwarded-For": "198.51.100.4"})
        token = sign_in(http)
        http.post(f"/runs/{proxied.waiting.id}/cancel", data={"csrf": token})
    (entry,) = AuditLog(proxied.store, proxied.connection).recent()
    assert entry.address == "198.51.100.4" and entry.via == "password"
