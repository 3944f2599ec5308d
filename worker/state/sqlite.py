"""SQLite backend: the embedded default (``ppw run`` on one machine needs no Redis).

It behaves like the Redis backend in everything the contract tests check: keys hold one type,
expired keys are absent on read, leases and counters are atomic across threads *and* processes
sharing the file (each write is one ``BEGIN IMMEDIATE`` transaction), and a batch applies whole or
not at all. OAuth tokens live here too, so the database, its WAL and its shared-memory file are
created readable by the owner only.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar, cast

from worker.state.base import StateError, StateStore, Turn, WriteBatch

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,            -- 'string' | 'hash' | 'zset'
    value TEXT,                    -- strings only
    expires_at REAL                -- unix time; NULL = no expiry
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS hash_fields (
    key TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS zset_members (
    key TEXT NOT NULL,
    member TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (key, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS zset_by_score ON zset_members(key, score, member);
"""

_SWEEP_EVERY = 60.0  # seconds between sweeps of expired keys, per process
#: Expired keys one sweep removes. A sweep that finds this many leaves the next write to sweep
#: on, so a store whose keys expire faster than this a minute (breaker counters and rate-limit
#: windows under a burst) catches up in steps of this size instead of growing for ever.
_SWEEP_BATCH = 1000
_SCAN_PAGE = 500
_KEY_MAX = "\U0010ffff"


class _WrongType(StateError):
    pass


def _deadline(ttl: float | None, now: float) -> float | None:
    if ttl is None:
        return None
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl}")
    return now + ttl


class _Tx:
    """Helpers that run inside one open transaction on one connection."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn = conn
        self.now = now

    def kind(self, key: str) -> str | None:
        """The live type of ``key``; an expired key is removed on the way."""
        row = self.conn.execute("SELECT kind, expires_at FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        kind, expires_at = row
        if expires_at is not None and expires_at <= self.now:
            self.drop(key)
            return None
        return str(kind)

    def expect(self, key: str, wanted: str) -> bool:
        """True when ``key`` exists with type ``wanted``; False when absent; error when another type."""
        kind = self.kind(key)
        if kind is None:
            return False
        if kind != wanted:
            raise _WrongType(f"WRONGTYPE: key holds a {kind}, not a {wanted}")
        return True

    def expect_live(self, key: str, wanted: str = "string") -> bool:
        """Read-only twin of :meth:`expect`: never deletes, so it suits a read transaction."""
        row = self.conn.execute("SELECT kind, expires_at FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self.now):
            return False
        if row[0] != wanted:
            raise _WrongType(f"WRONGTYPE: key holds a {row[0]}, not a {wanted}")
        return True

    def drop(self, key: str) -> bool:
        existed = self.conn.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0
        self.conn.execute("DELETE FROM hash_fields WHERE key = ?", (key,))
        self.conn.execute("DELETE FROM zset_members WHERE key = ?", (key,))
        return existed

    def release(self, key: str, owner: str) -> bool:
        """Drop the lease ``key`` if ``owner`` holds it."""
        if not self.expect(key, "string"):
            return False
        row = self.conn.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] != owner:
            return False
        return self.drop(key)

    def set(self, key: str, value: str, ttl: float | None) -> None:
        expires_at = _deadline(ttl, self.now)
        if self.kind(key) not in (None, "string"):
            self.drop(key)  # like Redis SET: replaces a key of any type
        self.conn.execute(
            "INSERT INTO entries(key, kind, value, expires_at) VALUES (?, 'string', ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET kind = 'string', value = excluded.value, "
            "expires_at = excluded.expires_at",
            (key, value, expires_at),
        )

    def delete(self, keys: Sequence[str]) -> int:
        count = 0
        for k in keys:
            live = self.kind(k) is not None
            if self.drop(k) and live:
                count += 1
        return count

    def hset(self, key: str, mapping: Mapping[str, str] | Mapping[str, bytes]) -> None:
        if not mapping:
            return
        if not self.expect(key, "hash"):
            self.conn.execute("INSERT INTO entries(key, kind) VALUES (?, 'hash')", (key,))
        self.conn.executemany(
            "INSERT INTO hash_fields(key, field, value) VALUES (?, ?, ?) "
            "ON CONFLICT(key, field) DO UPDATE SET value = excluded.value",
            [(key, f, v) for f, v in mapping.items()],
        )

    def hdel(self, key: str, fields: Sequence[str]) -> int:
        if not fields or not self.expect(key, "hash"):
            return 0
        removed = sum(
            self.conn.execute("DELETE FROM hash_fields WHERE key = ? AND field = ?", (key, f)).rowcount
            for f in dict.fromkeys(fields)
        )
        self._drop_if_empty(key, "hash_fields")
        return removed

    def zadd(self, key: str, mapping: Mapping[str, float]) -> None:
        if not mapping:
            return
        for score in mapping.values():
            if score != score:  # NaN
                raise ValueError("a sorted-set score cannot be NaN")
        if not self.expect(key, "zset"):
            self.conn.execute("INSERT INTO entries(key, kind) VALUES (?, 'zset')", (key,))
        self.conn.executemany(
            "INSERT INTO zset_members(key, member, score) VALUES (?, ?, ?) "
            "ON CONFLICT(key, member) DO UPDATE SET score = excluded.score",
            [(key, m, float(s)) for m, s in mapping.items()],
        )

    def zrem(self, key: str, members: Sequence[str]) -> int:
        if not members or not self.expect(key, "zset"):
            return 0
        removed = sum(
            self.conn.execute("DELETE FROM zset_members WHERE key = ? AND member = ?", (key, m)).rowcount
            for m in dict.fromkeys(members)
        )
        if removed:  # a run leaving no status index (most writes) costs one lookup, not three
            self._drop_if_empty(key, "zset_members")
        return removed

    def _drop_if_empty(self, key: str, table: str) -> None:
        """Redis removes a hash or sorted set with its last element; so do we."""
        if self.conn.execute(f"SELECT 1 FROM {table} WHERE key = ? LIMIT 1", (key,)).fetchone() is None:
            self.conn.execute("DELETE FROM entries WHERE key = ?", (key,))

    def sweep(self, limit: int = _SWEEP_BATCH) -> int:
        """Remove up to ``limit`` expired keys; returns how many."""
        expired = [
            row[0]
            for row in self.conn.execute(
                "SELECT key FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
                (self.now, limit),
            )
        ]
        for k in expired:
            self.drop(k)
        return len(expired)


class _SqliteBatch(WriteBatch):
    def __init__(self) -> None:
        self.ops: list[Callable[[_Tx], object]] = []

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        _deadline(ttl, 0.0)  # reject a bad ttl where it is written, not at commit
        self.ops.append(lambda tx: tx.set(key, value, ttl))

    def delete(self, *keys: str) -> None:
        self.ops.append(lambda tx: tx.delete(keys))

    def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        frozen = dict(mapping)
        self.ops.append(lambda tx: tx.hset(key, frozen))

    def hdel(self, key: str, *fields: str) -> None:
        self.ops.append(lambda tx: tx.hdel(key, fields))

    def hset_bytes(self, key: str, mapping: Mapping[str, bytes]) -> None:
        frozen = dict(mapping)  # bytes are bound as BLOBs, in the same column as text values
        self.ops.append(lambda tx: tx.hset(key, frozen))

    def zadd(self, key: str, mapping: Mapping[str, float]) -> None:
        frozen = dict(mapping)
        self.ops.append(lambda tx: tx.zadd(key, frozen))

    def zrem(self, key: str, *members: str) -> None:
        self.ops.append(lambda tx: tx.zrem(key, members))

    def release_lease(self, key: str, owner: str) -> None:
        self.ops.append(lambda tx: tx.release(key, owner))


class SqliteStore(StateStore):
    """State in one SQLite file, with one connection per thread (and per process after a fork).

    Parameters
    ----------
    path:
        The database file; its parent directories are created.
    busy_timeout:
        Seconds a write waits for another process's write to finish before failing.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        #: each thread's connection, with its thread: those of threads that ended are closed
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._in_transaction: set[sqlite3.Connection] = set()
        self._lock = threading.Lock()
        self._last_sweep = 0.0
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._restrict_permissions()
            conn = self._connection()
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open SQLite state at {self.path}: {exc}") from None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _restrict_permissions(self) -> None:
        """SQLite gives -wal and -shm the database's mode; make sure all three are owner-only."""
        for suffix in ("", "-wal", "-shm"):
            candidate = Path(f"{self.path}{suffix}")
            if candidate.exists() and candidate.stat().st_mode & 0o077:
                candidate.chmod(0o600)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        pid: int | None = getattr(self._local, "pid", None)
        if conn is not None and pid == os.getpid():
            return conn
        if self._closed:
            raise StateError("the SQLite state store is closed")
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # close() may run on another thread
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # the step ledger must survive a power cut
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._lock:
            ended = [
                (t, c) for t, c in self._connections if not t.is_alive() and c not in self._in_transaction
            ]
            self._connections = [(t, c) for t, c in self._connections if (t, c) not in ended]
            self._connections.append((threading.current_thread(), conn))
        for _thread, stale in ended:  # short-lived threads (the scheduler's jobs) leave theirs behind
            with suppress(sqlite3.Error):
                stale.close()
        self._restrict_permissions()
        return conn

    @contextmanager
    def _tx(self, write: bool) -> Iterator[_Tx]:
        """One transaction; a write takes the database's write lock up front (``BEGIN IMMEDIATE``)."""
        try:
            conn = self._connection()
        except sqlite3.Error as exc:
            raise StateError(f"SQLite state unavailable: {exc}") from None
        self._in_transaction.add(conn)  # close() leaves it to this thread until the transaction ends
        try:
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise StateError(f"SQLite state unavailable: {exc}") from None
            tx = _Tx(conn, time.time())
            try:
                yield tx
                if write and tx.now - self._last_sweep > _SWEEP_EVERY and tx.sweep() < _SWEEP_BATCH:
                    self._last_sweep = tx.now  # caught up; a full batch leaves the next write to go on
                conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StateError(f"SQLite state error: {type(exc).__name__}: {exc}") from None
                raise
        finally:
            self._in_transaction.discard(conn)
            if self._closed:  # close() ran meanwhile and left this connection to us
                with suppress(sqlite3.Error):
                    conn.close()

    def _read(self, fn: Callable[[_Tx], T]) -> T:
        with self._tx(write=False) as tx:
            return fn(tx)

    def _write(self, fn: Callable[[_Tx], T]) -> T:
        with self._tx(write=True) as tx:
            return fn(tx)

    # plain keys -----------------------------------------------------------------------------
    def _get(self, tx: _Tx, key: str) -> str | None:
        if not tx.expect(key, "string"):
            return None
        row = tx.conn.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _live_string(self, tx: _Tx, key: str) -> str | None:
        row = tx.conn.execute(
            "SELECT value FROM entries WHERE key = ? AND kind = 'string' "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (key, tx.now),
        ).fetchone()
        return None if row is None else str(row[0])

    def get(self, key: str) -> str | None:
        return self._read(lambda tx: self._live_string(tx, key) if tx.expect_live(key) else None)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        return self._read(lambda tx: [self._live_string(tx, k) for k in keys])

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._write(lambda tx: tx.set(key, value, ttl))

    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        def run(tx: _Tx) -> bool:
            if tx.kind(key) is not None:
                return False
            tx.set(key, value, ttl)
            return True

        return self._write(run)

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return self._write(lambda tx: tx.delete(keys))

    def set_many_if_absent(self, values: Mapping[str, str], ttl: float | None = None) -> frozenset[str]:
        if not values:
            return frozenset()

        def run(tx: _Tx) -> frozenset[str]:
            made = []
            for k, v in values.items():
                if tx.kind(k) is None:
                    tx.set(k, v, ttl)
                    made.append(k)
            return frozenset(made)

        return self._write(run)

    def incr_many(self, keys: Sequence[str], ttl: float | None = None) -> list[int]:
        if not keys:
            return []
        return self._write(lambda tx: [self._incr(tx, k, 1, ttl) for k in keys])

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        return self._write(lambda tx: self._incr(tx, key, amount, ttl))

    def _incr(self, tx: _Tx, key: str, amount: int, ttl: float | None) -> int:
        if not tx.expect(key, "string"):
            tx.set(key, str(amount), ttl)
            return amount
        current = self._get(tx, key)
        try:
            value = int(current or "0") + amount
        except ValueError:
            raise StateError("value is not an integer") from None
        tx.conn.execute("UPDATE entries SET value = ? WHERE key = ?", (str(value), key))
        return value

    def ttl(self, key: str) -> float | None:
        def run(tx: _Tx) -> float | None:
            row = tx.conn.execute("SELECT expires_at FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] is None or row[0] <= tx.now:
                return None
            return float(row[0]) - tx.now

        return self._read(run)

    def scan(self, prefix: str) -> Iterator[str]:
        # Keyset pages, each its own short read: no transaction stays open while the caller works.
        after: str | None = None
        while True:
            rows = self._read(functools.partial(self._scan_page, prefix=prefix, after=after))
            yield from (found for found in rows if found.startswith(prefix))
            if len(rows) < _SCAN_PAGE:
                return
            after = rows[-1]

    def key_type(self, key: str) -> str | None:
        def run(tx: _Tx) -> str | None:
            row = tx.conn.execute("SELECT kind, expires_at FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None or (row[1] is not None and row[1] <= tx.now):
                return None
            return str(row[0])

        return self._read(run)

    @staticmethod
    def _scan_page(tx: _Tx, *, prefix: str, after: str | None) -> list[str]:
        lower, cmp = (prefix, ">=") if after is None else (after, ">")
        rows = tx.conn.execute(
            f"SELECT key FROM entries WHERE key {cmp} ? AND key < ? "
            "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?",
            (lower, prefix + _KEY_MAX, tx.now, _SCAN_PAGE),
        ).fetchall()
        return [str(row[0]) for row in rows]

    # leases ---------------------------------------------------------------------------------
    def _claim(self, tx: _Tx, key: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease ``key`` for ``owner`` unless someone else holds it."""
        current = self._get(tx, key)
        if current is not None and current != owner:
            return False
        tx.set(key, owner, ttl)
        return True

    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        return self._write(lambda tx: self._claim(tx, key, owner, ttl))

    def release_lease(self, key: str, owner: str) -> bool:
        return self._write(lambda tx: tx.release(key, owner))

    def acquire_leases_and_get(
        self, claims: Sequence[tuple[str, str, float]], keys: Sequence[str]
    ) -> tuple[list[bool], list[str | None]]:
        def run(tx: _Tx) -> tuple[list[bool], list[str | None]]:
            taken = [self._claim(tx, k, owner, ttl) for k, owner, ttl in claims]
            return taken, [self._live_string(tx, k) for k in keys]

        return self._write(run)

    # hashes ---------------------------------------------------------------------------------
    def hget(self, key: str, field: str) -> str | None:
        return self.hmget(key, [field])[0]

    def hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        return cast("list[str | None]", self._hmget(key, fields))

    def hmget_bytes(self, key: str, fields: Sequence[str]) -> list[bytes | None]:
        return [v.encode() if isinstance(v, str) else v for v in self._hmget(key, fields)]

    def hset_bytes(self, key: str, mapping: Mapping[str, bytes]) -> None:
        if mapping:
            self._write(lambda tx: tx.hset(key, mapping))

    def _hmget(self, key: str, fields: Sequence[str]) -> list[str | bytes | None]:
        if not fields:
            return []

        def run(tx: _Tx) -> list[str | bytes | None]:
            if not tx.expect_live(key, "hash"):
                return [None] * len(fields)
            found: dict[str, str | bytes] = {}
            unique = list(dict.fromkeys(fields))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    tx.conn.execute(
                        f"SELECT field, value FROM hash_fields WHERE key = ? AND field IN ({marks})",
                        (key, *chunk),
                    ).fetchall()
                )
            return [found.get(f) for f in fields]

        return self._read(run)

    def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        if mapping:
            self._write(lambda tx: tx.hset(key, mapping))

    def hdel(self, key: str, *fields: str) -> int:
        if not fields:
            return 0
        return self._write(lambda tx: tx.hdel(key, fields))

    def hgetall(self, key: str) -> dict[str, str]:
        def run(tx: _Tx) -> dict[str, str]:
            if not tx.expect_live(key, "hash"):
                return {}
            return dict(
                tx.conn.execute("SELECT field, value FROM hash_fields WHERE key = ?", (key,)).fetchall()
            )

        return self._read(run)

    def hkeys(self, key: str) -> list[str]:
        def run(tx: _Tx) -> list[str]:
            if not tx.expect_live(key, "hash"):
                return []
            rows = tx.conn.execute("SELECT field FROM hash_fields WHERE key = ?", (key,)).fetchall()
            return [row[0] for row in rows]

        return self._read(run)

    def hlen(self, key: str) -> int:
        def run(tx: _Tx) -> int:
            if not tx.expect_live(key, "hash"):
                return 0
            return int(
                tx.conn.execute("SELECT COUNT(*) FROM hash_fields WHERE key = ?", (key,)).fetchone()[0]
            )

        return self._read(run)

    # sorted sets ----------------------------------------------------------------------------
    def zadd(self, key: str, mapping: Mapping[str, float]) -> None:
        if mapping:
            self._write(lambda tx: tx.zadd(key, mapping))

    def zrem(self, key: str, *members: str) -> int:
        if not members:
            return 0
        return self._write(lambda tx: tx.zrem(key, members))

    def zrange_by_score(
        self,
        key: str,
        minimum: float = float("-inf"),
        maximum: float = float("inf"),
        *,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[tuple[str, float]]:
        order = "DESC" if descending else "ASC"

        def run(tx: _Tx) -> list[tuple[str, float]]:
            if not tx.expect_live(key, "zset"):
                return []
            rows = tx.conn.execute(
                "SELECT member, score FROM zset_members WHERE key = ? AND score >= ? AND score <= ? "
                f"ORDER BY score {order}, member {order} LIMIT ?",
                (key, minimum, maximum, -1 if limit is None else limit),
            ).fetchall()
            return [(str(m), float(s)) for m, s in rows]

        return self._read(run)

    def take_turns(self, turns: Sequence[Turn]) -> list[tuple[str, bool]]:
        def run(tx: _Tx) -> list[tuple[str, bool]]:
            return [self._take_turn(tx, turn) for turn in turns]

        return self._write(run) if turns else []

    def _take_turn(self, tx: _Tx, turn: Turn) -> tuple[str, bool]:
        tx.zadd(turn.queue, {turn.member: turn.score})
        row = tx.conn.execute(
            "SELECT member FROM zset_members WHERE key = ? ORDER BY score, member LIMIT 1", (turn.queue,)
        ).fetchone()
        first = str(row[0])
        return first, first == turn.member and self._claim(tx, turn.lease, turn.member, turn.ttl)

    def zcard(self, key: str) -> int:
        def run(tx: _Tx) -> int:
            if not tx.expect_live(key, "zset"):
                return 0
            return int(
                tx.conn.execute("SELECT COUNT(*) FROM zset_members WHERE key = ?", (key,)).fetchone()[0]
            )

        return self._read(run)

    def zcount(self, key: str, minimum: float = float("-inf"), maximum: float = float("inf")) -> int:
        def run(tx: _Tx) -> int:
            if not tx.expect_live(key, "zset"):
                return 0
            row = tx.conn.execute(
                "SELECT COUNT(*) FROM zset_members WHERE key = ? AND score >= ? AND score <= ?",
                (key, minimum, maximum),
            ).fetchone()
            return int(row[0])

        return self._read(run)

    # atomic groups of writes ----------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[WriteBatch]:
        collected = _SqliteBatch()
        yield collected
        if collected.ops:

            def run(tx: _Tx) -> None:
                for op in collected.ops:
                    op(tx)

            self._write(run)

    # lifecycle ------------------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            self._read(lambda tx: tx.conn.execute("SELECT 1").fetchone())
            return True
        except StateError:
            return False

    def close(self) -> None:
        """Close the connections of every thread.

        One in a transaction on another thread is left for that thread to close when its
        transaction ends: closing it here would wait for it, up to ``busy_timeout`` when it waits
        for another process's write, and a process stopping must not wait that long.
        """
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for _thread, conn in connections:
            if conn in self._in_transaction:
                continue
            with suppress(sqlite3.Error):
                conn.close()

    def size_bytes(self, prefix: str) -> int:
        hi = prefix + _KEY_MAX

        def run(tx: _Tx) -> int:
            params = (prefix, hi)
            total = 0
            for sql in (
                "SELECT COALESCE(SUM(LENGTH(key) + COALESCE(LENGTH(value), 0)), 0) FROM entries "
                "WHERE key >= ? AND key < ?",
                "SELECT COALESCE(SUM(LENGTH(key) + LENGTH(field) + LENGTH(value)), 0) FROM hash_fields "
                "WHERE key >= ? AND key < ?",
                "SELECT COALESCE(SUM(LENGTH(key) + LENGTH(member) + 8), 0) FROM zset_members "
                "WHERE key >= ? AND key < ?",
            ):
                total += int(tx.conn.execute(sql, params).fetchone()[0])
            return total

        return self._read(run)
