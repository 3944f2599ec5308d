"""What only the SQLite backend has to get right: files, permissions, disk errors, sweeping."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

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


def test_a_sweep_that_falls_behind_catches_up_on_the_next_writes(tmp_path: Path) -> None:
    # Keys expiring faster than a sweep a minute removes them (breaker counters in a burst) must
    # not pile up: a full sweep leaves the next write to sweep on, each in a bounded step.
    path = tmp_path / "s.db"
    with time_machine.travel(datetime(2026, 3, 2, tzinfo=UTC), tick=False) as clock:
        store = SqliteStore(path)
        with store.batch() as batch:
            for n in range(2500):
                batch.set(key("c", "breaker", str(n)), "1", ttl=60)
        clock.shift(61)  # expired, and a sweep is due
        store.set(key("c", "a"), "v")
        assert _rows(path) == 1 + 1500  # one batch of 1,000 swept
        store.set(key("c", "b"), "v")
        assert _rows(path) == 2 + 500  # the next write went on at once, not a minute later
        store.set(key("c", "c"), "v")
        assert _rows(path) == 3  # caught up
        store.set(key("c", "breaker", "new"), "1", ttl=60)
        clock.shift(30)
        store.set(key("c", "d"), "v")
        assert _rows(path) == 5  # then a minute between sweeps again
        store.close()


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


def test_many_threads_writing_batches_each_see_their_write_once_it_returns(tmp_path: Path) -> None:
    """Concurrent batches from many threads (a run thread's journal flushes) all land, whole, and
    each is visible to its writer the moment ``batch()`` returns."""
    store = SqliteStore(tmp_path / "state.db")
    unseen: list[str] = []

    def write(thread: int) -> None:
        for n in range(40):
            with store.batch() as b:
                b.set(f"ppw:c:run:{thread}:{n}", "record")
                b.hset("ppw:c:ledger", {f"{thread}:{n}": "done"})
                b.zadd("ppw:c:index", {f"{thread}:{n}": float(n)})
            if store.get(f"ppw:c:run:{thread}:{n}") != "record":
                unseen.append(f"{thread}:{n}")

    try:
        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert unseen == []
        assert store.hlen("ppw:c:ledger") == 8 * 40
        assert store.zcard("ppw:c:index") == 8 * 40
        assert sum(1 for _ in store.scan("ppw:c:run:")) == 8 * 40
    finally:
        store.close()


def test_a_failing_batch_among_concurrent_ones_is_undone_alone(tmp_path: Path) -> None:
    """A batch that fails half-way (its second write meets a key of another type) raises in its
    caller and leaves nothing behind, while the batches written beside it all land."""
    store = SqliteStore(tmp_path / "state.db")
    store.hset("ppw:c:typed", {"f": "a hash"})
    failures: list[BaseException] = []
    landed: list[str] = []

    def good(thread: int) -> None:
        for n in range(30):
            with store.batch() as b:
                b.set(f"ppw:c:good:{thread}:{n}", "v")
                b.hset("ppw:c:ledger", {f"{thread}:{n}": "done"})
            landed.append(f"{thread}:{n}")

    def bad(thread: int) -> None:
        for n in range(30):
            try:
                with store.batch() as b:
                    b.set(f"ppw:c:bad:{thread}:{n}", "half")
                    b.zadd("ppw:c:typed", {"m": 1.0})  # WRONGTYPE: the key holds a hash
            except StateError as exc:
                failures.append(exc)

    try:
        threads = [threading.Thread(target=good, args=(i,)) for i in range(4)]
        threads += [threading.Thread(target=bad, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(failures) == 2 * 30
        assert all("WRONGTYPE" in str(exc) for exc in failures)
        assert list(store.scan("ppw:c:bad:")) == []
        assert len(landed) == 4 * 30
        assert store.hlen("ppw:c:ledger") == 4 * 30
        assert store.hgetall("ppw:c:typed") == {"f": "a hash"}
    finally:
        store.close()


def test_a_key_changing_type_keeps_no_elements_of_its_old_self(tmp_path: Path) -> None:
    """``set`` over a hash or a sorted set, and ``delete``, remove the old elements with the key:
    a hash or sorted set made later under the same name starts empty."""
    store = SqliteStore(tmp_path / "state.db")
    try:
        store.hset("ppw:c:k", {"old": "field"})
        store.set("ppw:c:k", "a string")
        store.delete("ppw:c:k")
        store.hset("ppw:c:k", {"new": "field"})
        assert store.hgetall("ppw:c:k") == {"new": "field"}
        store.zadd("ppw:c:z", {"old": 1.0})
        store.set("ppw:c:z", "a string")
        assert store.get("ppw:c:z") == "a string"
        store.delete("ppw:c:z")
        store.zadd("ppw:c:z", {"new": 2.0})
        assert store.zrange_by_score("ppw:c:z") == [("new", 2.0)]
        with closing(sqlite3.connect(tmp_path / "state.db")) as raw:
            fields = raw.execute("SELECT key, field FROM hash_fields").fetchall()
            members = raw.execute("SELECT key, member FROM zset_members").fetchall()
        assert fields == [("ppw:c:k", "new")]
        assert members == [("ppw:c:z", "new")]
    finally:
        store.close()


def test_deleting_an_expired_key_does_not_count_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        with time_machine.travel(1_000_000.0, tick=False) as traveller:
            store.set("ppw:c:short", "v", ttl=5)
            store.set("ppw:c:long", "v", ttl=60)
            traveller.shift(10)
            assert store.delete("ppw:c:short", "ppw:c:long", "ppw:c:long", "ppw:c:never") == 1
            assert store.key_type("ppw:c:long") is None
    finally:
        store.close()
