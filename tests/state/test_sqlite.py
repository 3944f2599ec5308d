"""What only the SQLite backend has to get right: files, permissions, disk errors, sweeping."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from worker.state import StateError, key
from worker.state.sqlite import SqliteStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_wal_and_shm_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "nested" / "dir" / "state.db")
        store.set("ppw:default:token", "secret-refresh-token")
    finally:
        os.umask(old)
    files = [tmp_path / "nested" / "dir" / n for n in ("state.db", "state.db-wal", "state.db-shm")]
    assert all(f.exists() for f in files)
    assert [_mode(f) for f in files] == [0o600, 0o600, 0o600]
    store.close()


def test_existing_world_readable_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    SqliteStore(path).close()
    assert _mode(path) == 0o600


def test_full_disk_fails_the_whole_batch(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.set("ppw:c:cursor", "old")
    # A cap on the database's size stands in for a full disk: writes past it fail with SQLITE_FULL.
    # (the cap applies to this thread's connection, the one the store uses for the writes below)
    pages = store._connection().execute("PRAGMA page_count").fetchone()[0]
    store._connection().execute(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(StateError, match="full"), store.batch() as b:
        b.set("ppw:c:cursor", "new")
        b.hset("ppw:c:snapshots", {f"record-{i}": "x" * 200 for i in range(2000)})
    assert store.get("ppw:c:cursor") == "old"
    assert store.hlen("ppw:c:snapshots") == 0
    store.close()


def test_two_stores_on_one_file_share_state(tmp_path: Path) -> None:
    first, second = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    assert first.acquire_lease("ppw:c:leader", "one", 30)
    assert not second.acquire_lease("ppw:c:leader", "two", 30)
    second.hset("ppw:c:h", {"a": "1"})
    assert first.hgetall("ppw:c:h") == {"a": "1"}
    first.close()
    second.close()


def test_expired_rows_are_swept(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = SqliteStore(path)
    first.set(key("c", "gone"), "v", ttl=0.05)
    first.close()
    second = SqliteStore(path)
    deadline = time.monotonic() + 5
    while second.get(key("c", "gone")) is not None:  # reads hide it but leave the row
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert _rows(path) == 1
    second.set(key("c", "other"), "v")  # a process's first write sweeps what has expired
    assert _rows(path) == 1
    assert second.get(key("c", "other")) == "v"
    second.close()


def _rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])


def test_closed_store_refuses_new_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.close()

    errors: list[BaseException] = []

    def use() -> None:
        try:
            store.get("ppw:c:x")
        except StateError as exc:
            errors.append(exc)

    thread = threading.Thread(target=use)
    thread.start()
    thread.join()
    assert errors


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """The scheduler runs each job on a thread of its own: their connections must not pile up
    (the soak benchmark found a descriptor leak of about six a second)."""
    store = SqliteStore(tmp_path / "state.db")
    try:
        for _ in range(50):
            worker = threading.Thread(target=lambda: store.get("ppw:x:k"))
            worker.start()
            worker.join()
        store.get("ppw:x:k")
        opened = [
            os.readlink(f"/proc/self/fd/{fd}")
            for fd in os.listdir("/proc/self/fd")
            if _is_link(f"/proc/self/fd/{fd}")
        ]
        assert sum(1 for target in opened if target.endswith("state.db")) <= 3
    finally:
        store.close()


def _is_link(path: str) -> bool:
    try:
        os.readlink(path)
    except OSError:
        return False
    return True
