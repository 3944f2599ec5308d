"""Choosing a backend from PPW_STATE_URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.state import open_store, sqlite_path
from worker.state.redis import RedisStore
from worker.state.sqlite import SqliteStore


def test_sqlite_relative_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///.ppw/state.db")
    assert isinstance(relative, SqliteStore)
    assert (tmp_path / ".ppw" / "state.db").exists()
    relative.close()
    absolute = open_store(f"sqlite:///{tmp_path}/abs/dir/s.db")
    assert isinstance(absolute, SqliteStore)
    assert (tmp_path / "abs" / "dir" / "s.db").exists()
    absolute.set("ppw:c:k", "v")
    absolute.close()
    assert sqlite_path(f"sqlite:///{tmp_path}/abs/dir/s.db") == tmp_path / "abs" / "dir" / "s.db"
    assert sqlite_path("sqlite:///rel/s.db") == Path("rel/s.db")


def test_sqlite_url_round_trips_through_store_url(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.set("ppw:c:k", "v")
    again = open_store(store.url)
    assert again.get("ppw:c:k") == "v"
    store.close()
    again.close()


def test_redis(redis_url: str) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisStore)
    assert store.ping()
    store.close()


def test_redis_repr_hides_password() -> None:
    store = open_store("redis://:hunter2@127.0.0.1:6379/15")
    assert "hunter2" not in repr(store)
    assert "***" in repr(store)
    store.close()


def test_unreachable_redis_is_a_state_error() -> None:
    from worker.state import StateError

    store = open_store("redis://127.0.0.1:1/0")
    assert store.ping() is False
    with pytest.raises(StateError, match="Redis GET failed"):
        store.get("ppw:c:k")


@pytest.mark.parametrize(
    "url", ["postgres://localhost/db", "state.db", "", "sqlite://", "sqlite:///", "sqlite:///:memory:"]
)
def test_unsupported_urls_are_explained(url: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite|PPW_STATE_URL"):
        open_store(url)


def test_error_for_unknown_scheme_hides_credentials() -> None:
    with pytest.raises(ValueError) as info:
        open_store("mysql://user:pw@host/db")
    assert "pw@" not in str(info.value)
