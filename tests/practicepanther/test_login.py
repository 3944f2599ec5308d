"""The authorization-code flow end to end: login() and `ppw auth login` against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.fixtures.client import SandboxAdmin, follow, login_in_thread
from worker.practicepanther.errors import LoginError
from worker.practicepanther.tokens import TokenStore, generate_key
from worker.settings import Settings
from worker.state import StateStore


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_login_follows_the_redirect_and_stores_tokens(
    pp_settings: Settings, redis_store: StateStore, sandbox_admin: SandboxAdmin
) -> None:
    mark = sandbox_admin.mark()
    url, thread, outcome = login_in_thread(pp_settings, redis_store)
    query = parse_qs(urlsplit(url).query)
    assert query["client_id"] == [pp_settings.pp_client_id]
    assert query["redirect_uri"] == [pp_settings.pp_redirect_uri]
    assert len(query["state"][0]) >= 32

    page = follow(url)
    thread.join(timeout=30)

    tokens = outcome.get(timeout=1)
    assert not isinstance(tokens, BaseException), tokens
    assert page.status_code == 200 and "Connected" in page.text
    stored = TokenStore(redis_store, pp_settings.connection_id, None).load()
    assert stored is not None
    assert stored.refresh_token.get_secret_value() == tokens.refresh_token.get_secret_value()
    assert stored.user and stored.user.get("id") and stored.user.get("email")
    assert stored.access_token.get_secret_value() not in page.text
    assert sandbox_admin.requests(mark)["token_grants"] == {"authorization_code": 1}


def test_each_login_uses_a_fresh_state(pp_settings: Settings, redis_store: StateStore) -> None:
    states = []
    for _ in range(2):
        url, thread, _outcome = login_in_thread(pp_settings, redis_store)
        states.append(parse_qs(urlsplit(url).query)["state"][0])
        follow(url)
        thread.join(timeout=30)
    assert states[0] != states[1]


def test_state_mismatch_is_refused_and_explained(pp_settings: Settings, redis_store: StateStore) -> None:
    url, thread, outcome = login_in_thread(pp_settings, redis_store)
    forged = _with_query(url, state="state-from-another-login")

    page = follow(forged)
    thread.join(timeout=30)

    error = outcome.get(timeout=1)
    assert isinstance(error, LoginError)
    assert "state" in error.message and "ppw auth login" in error.message
    assert page.status_code == 400
    assert "state does not match" in page.text
    assert TokenStore(redis_store, pp_settings.connection_id, None).load() is None


def test_a_denied_consent_is_reported(pp_settings: Settings, redis_store: StateStore) -> None:
    url, thread, outcome = login_in_thread(pp_settings, redis_store)
    state = parse_qs(urlsplit(url).query)["state"][0]
    denied = f"{pp_settings.pp_redirect_uri}?{urlencode({'error': 'access_denied', 'state': state})}"

    page = httpx.get(denied, timeout=30)
    thread.join(timeout=30)

    error = outcome.get(timeout=1)
    assert isinstance(error, LoginError) and "access_denied" in error.message
    assert page.status_code == 400


def test_login_times_out_with_advice(pp_settings: Settings, redis_store: StateStore) -> None:
    _url, thread, outcome = login_in_thread(pp_settings, redis_store, timeout=0.5)
    thread.join(timeout=30)
    error = outcome.get(timeout=1)
    assert isinstance(error, LoginError) and "--timeout" in error.message


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPW_")}
    env.update(
        PPW_PP_BASE_URL=settings.pp_base_url,
        PPW_PP_CLIENT_ID=settings.pp_client_id,
        PPW_PP_CLIENT_SECRET=settings.pp_client_secret.get_secret_value(),
        PPW_PP_REDIRECT_URI=settings.pp_redirect_uri,
        PPW_STATE_URL=settings.state_url,
        PPW_CONNECTION_ID=settings.connection_id,
        **extra,
    )
    return env


def _ppw(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_login_no_browser_status_logout(
    pp_settings: Settings, redis_store: StateStore, tmp_path: Path
) -> None:
    key = generate_key()
    env = _env(pp_settings, PPW_TOKEN_ENCRYPTION_KEY=key)
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "auth", "login", "--no-browser", "--timeout", "30"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith(pp_settings.pp_base_url + "/OAuth/Authorize?"), url
        assert follow(url).status_code == 200
        _out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Connected to PracticePanther as" in err

    encrypted = TokenStore(redis_store, pp_settings.connection_id, key)
    raw = redis_store.get(encrypted.key)
    stored = encrypted.load()
    assert raw is not None and stored is not None and '"fernet"' in raw
    assert stored.access_token.get_secret_value() not in raw
    assert stored.refresh_token.get_secret_value() not in raw

    status = _ppw("auth", "status", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "connected" in status.stdout and "expires" in status.stdout

    logout = _ppw("auth", "logout", env=env, cwd=tmp_path)
    assert logout.returncode == 0 and "forgotten" in logout.stderr
    after = _ppw("auth", "status", env=env, cwd=tmp_path)
    assert after.returncode == 1 and "not logged in" in after.stdout


def test_cli_login_refuses_a_busy_port(pp_settings: Settings, tmp_path: Path) -> None:
    import socket

    port = urlsplit(pp_settings.pp_redirect_uri).port
    assert port is not None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = _ppw("auth", "login", "--timeout", "5", env=_env(pp_settings), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


@pytest.mark.parametrize("missing", ["PPW_PP_CLIENT_ID", "PPW_PP_CLIENT_SECRET"])
def test_cli_login_needs_credentials(pp_settings: Settings, tmp_path: Path, missing: str) -> None:
    env = _env(pp_settings)
    env[missing] = ""
    result = _ppw("auth", "login", env=env, cwd=tmp_path)
    assert result.returncode == 1 and "PPW_PP_CLIENT_ID" in result.stderr
