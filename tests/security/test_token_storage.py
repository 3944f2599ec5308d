"""OAuth tokens at rest: the SQLite state is owner-only, and encrypted tokens are not in the file.

The refresh token opens the firm's whole PracticePanther account, and the embedded default keeps
it in a SQLite file. Whatever the umask of whoever starts the worker, the database and its WAL and
shared-memory files are created ``0600`` (directory ``0700``); with ``PPW_TOKEN_ENCRYPTION_KEY``
the file holds no token in clear. Checked after a real login and after ``ppw run`` creates its
state from nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tests.chaos.harness import PpwProcess
from tests.fixtures.client import connect, sandbox_settings
from worker.practicepanther.tokens import TokenStore
from worker.sandbox import SandboxServer
from worker.state import open_store


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 000: anything not chmod-ed explicitly would come out world-readable."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _state_files(db: Path) -> list[Path]:
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]


def test_login_stores_tokens_owner_only_and_encrypted(
    sandbox: SandboxServer, tmp_path: Path, connection_id: str, permissive_umask: None
) -> None:
    db = tmp_path / "fresh" / "state" / "state.db"
    key = Fernet.generate_key().decode()
    settings = sandbox_settings(
        sandbox, f"sqlite:///{db}", connection_id, token_encryption_key=SecretStr(key)
    )
    store = open_store(settings.state_url)
    try:
        tokens = connect(settings, store)
        files = _state_files(db)
        assert db in files
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        assert _mode(db.parent) == 0o700
        raw = b"".join(p.read_bytes() for p in files)
        for secret in (tokens.access_token.get_secret_value(), tokens.refresh_token.get_secret_value()):
            assert secret.encode() not in raw, "a token is stored in clear"
        assert TokenStore(store, connection_id, key).load() is not None, "and it reads back with the key"
    finally:
        store.close()


def test_ppw_run_creates_its_state_owner_only(
    sandbox: SandboxServer, tmp_path: Path, connection_id: str, permissive_umask: None
) -> None:
    db = tmp_path / "state" / "state.db"
    settings = sandbox_settings(sandbox, f"sqlite:///{db}", connection_id)
    rules = tmp_path / "rules"
    rules.mkdir()
    env = {
        "PPW_PP_BASE_URL": settings.pp_base_url,
        "PPW_PP_CLIENT_ID": settings.pp_client_id,
        "PPW_PP_CLIENT_SECRET": settings.pp_client_secret.get_secret_value(),
        "PPW_STATE_URL": settings.state_url,
        "PPW_BROKER_URL": "memory://",
        "PPW_CONNECTION_ID": connection_id,
        "PPW_RULES_DIR": str(rules),
    }
    worker = PpwProcess("run", env, tmp_path / "work")  # inherits umask 000 from this process
    try:
        worker.start(wait_ready=False)
        files = _state_files(db)
        assert db in files
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        assert _mode(db.parent) == 0o700
    finally:
        worker.close()
