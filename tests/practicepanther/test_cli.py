"""`ppw auth status|logout|generate-key` as typed, with their exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from worker.cli import app
from worker.practicepanther.client import PracticePantherClient
from worker.practicepanther.tokens import TokenStore
from worker.settings import Settings, get_settings

runner = CliRunner()


@pytest.fixture
def env(pp_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The process environment pointing `ppw` at the sandbox and the test's connection."""
    for name, value in {
        "PPW_PP_BASE_URL": pp_settings.pp_base_url,
        "PPW_PP_CLIENT_ID": pp_settings.pp_client_id,
        "PPW_PP_CLIENT_SECRET": pp_settings.pp_client_secret.get_secret_value(),
        "PPW_PP_REDIRECT_URI": pp_settings.pp_redirect_uri,
        "PPW_STATE_URL": pp_settings.state_url,
        "PPW_CONNECTION_ID": pp_settings.connection_id,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PPW_TOKEN_ENCRYPTION_KEY", raising=False)
    get_settings.cache_clear()
    yield pp_settings
    get_settings.cache_clear()


def test_status_when_never_logged_in(env: Settings) -> None:
    result = runner.invoke(app, ["auth", "status"])
    assert result.exit_code == 1
    assert "not logged in" in result.output


def test_status_when_connected(env: Settings, pp_client: PracticePantherClient) -> None:
    result = runner.invoke(app, ["auth", "status"])
    assert result.exit_code == 0, result.output
    assert "status:       connected" in result.output
    assert "user:" in result.output and "expires" in result.output and "refresh token" in result.output

    as_json = runner.invoke(app, ["auth", "status", "--json"])
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert data["connected"] is True and data["user"]["id"] and data["user_label"]
    token = pp_client.oauth.access_token()
    assert token not in as_json.output and token not in result.output


def test_status_when_reauthorisation_is_needed(env: Settings, pp_client: PracticePantherClient) -> None:
    pp_client.oauth.tokens.mark_reauth("the token endpoint answered invalid_grant")
    result = runner.invoke(app, ["auth", "status", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["needs_reauth"] is True and "invalid_grant" in data["reauth_reason"]


def test_status_when_practicepanther_is_unreachable(
    env: Settings, pp_client: PracticePantherClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PPW_PP_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("PPW_MAX_RETRIES", "0")
    get_settings.cache_clear()
    result = runner.invoke(app, ["auth", "status"])
    assert result.exit_code == 2, result.output
    assert "could not be reached" in result.output

    offline = runner.invoke(app, ["auth", "status", "--offline"])
    assert offline.exit_code == 0


def test_status_reports_an_expired_token_refreshed(env: Settings, pp_client: PracticePantherClient) -> None:
    tokens = pp_client.oauth.tokens.load()
    assert tokens is not None
    past = datetime.now(UTC) - timedelta(minutes=1)
    pp_client.oauth.tokens.save(tokens.model_copy(update={"expires_at": past, "obtained_at": past}))
    result = runner.invoke(app, ["auth", "status", "--json"])
    assert result.exit_code == 0
    expires = datetime.fromisoformat(json.loads(result.stdout)["access_token_expires_at"])
    assert expires > datetime.now(UTC)


def test_logout_forgets_tokens(env: Settings, pp_client: PracticePantherClient) -> None:
    result = runner.invoke(app, ["auth", "logout"])
    assert result.exit_code == 0 and "forgotten" in result.output
    assert TokenStore(pp_client.oauth.store, env.connection_id, None).load() is None
    assert runner.invoke(app, ["auth", "status"]).exit_code == 1
    assert "No tokens" in runner.invoke(app, ["auth", "logout"]).output


def test_generate_key_prints_a_usable_key() -> None:
    result = runner.invoke(app, ["auth", "generate-key"])
    assert result.exit_code == 0
    Fernet(result.stdout.strip().encode())
