"""``ppw console hash-password`` (the password from stdin, never argv) and ``ppw console``'s refusals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from worker.cli import app
from worker.settings import get_settings


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    import os

    for name in [n for n in os.environ if n.startswith("PPW_CONSOLE")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(str(tmp_path))  # no .env of the developer's
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_hash_password_reads_stdin_and_prints_an_argon2_hash() -> None:
    result = CliRunner().invoke(app, ["console", "hash-password"], input="a long enough password\n")
    assert result.exit_code == 0, result.output
    hashed = result.stdout.strip().splitlines()[0]
    assert hashed.startswith("$argon2id$")
    assert PasswordHasher().verify(hashed, "a long enough password")
    assert "a long enough password" not in result.output


def test_hash_password_refuses_a_short_password() -> None:
    result = CliRunner().invoke(app, ["console", "hash-password"], input="short\n")
    assert result.exit_code == 1 and "at least 12 characters" in result.output


def test_the_console_is_off_unless_enabled() -> None:
    result = CliRunner().invoke(app, ["console"])
    assert result.exit_code == 2 and "PPW_CONSOLE_ENABLED=true" in result.output


def test_the_console_refuses_to_start_without_a_secret_or_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PPW_CONSOLE_ENABLED", "true")
    result = CliRunner().invoke(app, ["console"])
    assert result.exit_code == 2 and "PPW_CONSOLE_SECRET" in result.output
    monkeypatch.setenv("PPW_CONSOLE_SECRET", "x" * 40)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["console"])
    assert result.exit_code == 2 and "no console user" in result.output
    monkeypatch.setenv("PPW_CONSOLE_USERS__ALICE", "admin:$argon2id$v=19$m=65536,t=3,p=4$x$y")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["console"])
    assert result.exit_code == 2 and "viewer or operator" in result.output


def test_users_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.console.auth import hash_password, parse_users, verify

    hashed = hash_password("a long enough password")
    monkeypatch.setenv("PPW_CONSOLE_USERS__ALICE", f"operator:{hashed}")
    monkeypatch.setenv("PPW_CONSOLE_USERS__BOB", f"viewer:{hashed}")
    users = parse_users(get_settings())
    assert {u.name: u.role for u in users.values()} == {"alice": "operator", "bob": "viewer"}
    assert verify(users, "Alice", "a long enough password") == users["alice"]
    assert verify(users, "alice", "wrong") is None
    assert hashed in get_settings().secret_values()  # scrubbed from logs like any secret


def test_the_console_refuses_a_trusted_header_without_trusted_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PPW_CONSOLE_ENABLED", "true")
    monkeypatch.setenv("PPW_CONSOLE_SECRET", "x" * 40)
    monkeypatch.setenv("PPW_CONSOLE_TRUSTED_HEADER", "X-Forwarded-User")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["console"])
    assert result.exit_code == 2 and "PPW_CONSOLE_TRUSTED_PROXIES" in result.output
