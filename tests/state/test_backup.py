"""``ppw state export|import``: every key type, TTLs, leases left out, refusals, and a restore that
polls on from where the backup stood. Each test runs from SQLite to Redis and from Redis to SQLite."""

from __future__ import annotations

import ast
import gzip
import importlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.fixtures.client import sandbox_settings
from tests.polling.conftest import Harness, _log_in
from worker.cli import app
from worker.polling import cursors
from worker.sandbox import SandboxServer
from worker.settings import get_settings
from worker.state import (
    BackupFileError,
    ImportIncomplete,
    Lease,
    StateError,
    StateStore,
    TargetNotEmpty,
    export_state,
    import_state,
    is_lease_key,
    key,
)
from worker.state import backup as backup_module
from worker.state.sqlite import SqliteStore

ZSTD_LIKE = b"\x28\xb5\x2f\xfd\x00\xff\xfe binary"


@pytest.fixture
def other_store(request: pytest.FixtureRequest, store: StateStore) -> StateStore:
    """An empty store of the other backend (same connection id, nothing in it yet)."""
    other: StateStore = request.getfixturevalue(
        "redis_store" if isinstance(store, SqliteStore) else "sqlite_store"
    )
    return other


def _fill(store: StateStore, connection: str) -> None:
    store.set(key(connection, "cursor", "matters"), '{"position": "2026-01-05T10:00:00Z"}')
    store.set(key(connection, "ünïcode", "ключ"), "Zoë ⚖️\nline two")
    store.set(key(connection, "dispatched", "e1"), "1", ttl=300)
    store.hset(key(connection, "pollstatus", "matters"), {"outcome": "ok", "records": "3"})
    store.hset_bytes(key(connection, "snap", "matters"), {"m1": ZSTD_LIKE, "m2": b"\xff" * 300})
    store.hset(key(connection, "snap", "matters"), {"m3": "plain text"})
    store.zadd(key(connection, "timers"), {"run-1": 1767607200.123456, "run-2": -3.5, "run-3": 0.1 + 0.2})
    store.incr(key(connection, "ratelimit"), 7)


def _contents(store: StateStore, connection: str) -> dict[str, Any]:
    """Everything under the connection, by key: (type, value) with hash values as bytes."""
    found: dict[str, Any] = {}
    for k in store.scan(key(connection) + ":"):
        kind = store.key_type(k)
        if kind == "string":
            found[k] = (kind, store.get(k))
        elif kind == "hash":
            names = sorted(store.hkeys(k))
            found[k] = (kind, dict(zip(names, store.hmget_bytes(k, names), strict=True)))
        else:
            found[k] = (kind, store.zrange_by_score(k))
    return found


def _lines(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as source:
        return [json.loads(line) for line in source]


def _rewrite(path: Path, lines: list[str]) -> None:
    path.write_bytes(gzip.compress("".join(lines).encode()))


# round trips --------------------------------------------------------------------------------
def test_every_key_type_round_trips_to_the_other_backend(
    store: StateStore, other_store: StateStore, connection_id: str, tmp_path: Path
) -> None:
    _fill(store, connection_id)
    path = tmp_path / "backup.jsonl.gz"
    result = export_state(store, path, [connection_id])
    assert result.keys == 7 and not path.with_name(path.name + ".tmp").exists()
    header, *body = _lines(path)
    assert header["format"] == "ppw-state-backup" and header["version"] == 1
    assert header["backend"] == ("sqlite" if isinstance(store, SqliteStore) else "redis")
    assert header["connections"] == [connection_id] and header["keys"] == 7 and header["lines"] == 7
    assert header["ppw"] and header["exported_at"]
    snap = next(line for line in body if line["k"] == key(connection_id, "snap", "matters"))
    assert snap["t"] == "hash" and snap["v"]["m3"] == "plain text" and "$b64" in snap["v"]["m1"]

    imported = import_state(other_store, path)
    assert imported.keys == 7 and imported.deleted == 0
    assert _contents(other_store, connection_id) == _contents(store, connection_id)
    assert other_store.hget(key(connection_id, "snap", "matters"), "m3") == "plain text"
    assert other_store.incr(key(connection_id, "ratelimit")) == 8  # a counter stays a counter


def test_ttls_are_kept_within_a_second(
    store: StateStore, other_store: StateStore, connection_id: str, tmp_path: Path
) -> None:
    brief, long = key(connection_id, "run-sent", "r1"), key(connection_id, "run", "r1")
    store.set(brief, "1", ttl=90)
    store.set(long, "{}", ttl=30 * 86400)
    path = tmp_path / "b.gz"
    export_state(store, path, [connection_id])
    left = {k: store.ttl(k) for k in (brief, long)}
    import_state(other_store, path)
    for k, seconds in left.items():
        restored = other_store.ttl(k)
        assert restored is not None and seconds is not None and abs(restored - seconds) < 1
    assert other_store.ttl(key(connection_id, "missing")) is None


def test_a_large_hash_is_split_over_lines_and_batches(
    store: StateStore,
    other_store: StateStore,
    connection_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snaps = key(connection_id, "snap", "contacts")
    store.hset_bytes(snaps, {f"c{i:05d}": ZSTD_LIKE + str(i).encode() for i in range(2500)})
    store.zadd(key(connection_id, "runs"), {f"r{i}": float(i) for i in range(1500)})
    path = tmp_path / "b.gz"
    result = export_state(store, path, [connection_id])
    assert (result.keys, result.lines) == (2, 5)  # 3 parts of the hash, 2 of the sorted set
    monkeypatch.setattr(backup_module, "BATCH_ITEMS", 700)
    import_state(other_store, path)
    assert other_store.hlen(snaps) == 2500 and other_store.zcard(key(connection_id, "runs")) == 1500
    assert _contents(other_store, connection_id) == _contents(store, connection_id)


# leases -------------------------------------------------------------------------------------
def test_leases_are_left_out(
    store: StateStore, other_store: StateStore, connection_id: str, tmp_path: Path
) -> None:
    leases = [
        key(connection_id, "lock", "poll", "matters"),
        key(connection_id, "run-lease", "r1"),
        key(connection_id, "rule-record", "rule", "matters", "m1"),
        key(connection_id, "scheduler", "leader"),
        key(connection_id, "oauth", "refresh"),
        key(connection_id, "sweeper"),
    ]
    for lease_key in leases:
        assert Lease(store, lease_key, ttl=30).acquire()
    store.set(key(connection_id, "cursor", "matters"), "{}")
    path = tmp_path / "b.gz"
    result = export_state(store, path, [connection_id])
    assert (result.keys, result.skipped_leases) == (1, len(leases))
    assert [line["k"] for line in _lines(path)[1:]] == [key(connection_id, "cursor", "matters")]
    import_state(other_store, path)
    assert set(other_store.scan(key(connection_id) + ":")) == {key(connection_id, "cursor", "matters")}


def _lease_sites() -> Iterator[tuple[str, str]]:
    """``(where, key)`` for every ``Lease(store, key, ...)``, ``lock`` and ``try_lock`` in worker/,
    the key built for connection ``c`` (other arguments ``x``)."""
    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "worker").rglob("*.py")):
        if path.parent.name == "state" or path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text())
        module = importlib.import_module(".".join(path.relative_to(root).with_suffix("").parts))
        assigned = {
            target.attr: node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Attribute)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in ("Lease", "lock", "try_lock") or len(node.args) < 2:
                continue
            built = node.args[1]
            if isinstance(built, ast.Attribute):
                built = assigned[built.attr]
            assert isinstance(built, ast.Call) and isinstance(built.func, ast.Name), ast.dump(built)
            parts = [a.value if isinstance(a, ast.Constant) else "x" for a in built.args]
            maker = key if built.func.id == "key" else getattr(module, built.func.id)
            yield f"{path.relative_to(root)}:{node.lineno}", maker("c", *parts[1:])


def test_every_lease_ppw_takes_is_known_as_a_lease() -> None:
    sites = dict(_lease_sites())
    assert len(sites) >= 9, sites  # polls, reconciles, held (2), runs (2), turns, leader, refresh, sweeper
    unknown = {where: k for where, k in sites.items() if not is_lease_key(k)}
    assert not unknown, f"add these to LEASE_KEYS in worker/state/locks.py: {unknown}"
    assert not is_lease_key(key("c", "cursor", "lock")) and not is_lease_key(key("c", "runs"))


# refusals -----------------------------------------------------------------------------------
def test_a_connection_with_state_is_refused_without_replace(
    store: StateStore, other_store: StateStore, connection_id: str, tmp_path: Path
) -> None:
    _fill(store, connection_id)
    path = tmp_path / "b.gz"
    export_state(store, path, [connection_id])
    stale = key(connection_id, "cursor", "tasks")
    other_store.set(stale, "old")
    with pytest.raises(TargetNotEmpty, match="--replace"):
        import_state(other_store, path)
    assert list(other_store.scan(key(connection_id) + ":")) == [stale]
    result = import_state(other_store, path, replace=True)
    assert result.deleted == 1 and other_store.get(stale) is None
    assert _contents(other_store, connection_id) == _contents(store, connection_id)


def test_leases_alone_do_not_make_a_connection_occupied(
    store: StateStore, other_store: StateStore, connection_id: str, tmp_path: Path
) -> None:
    store.set(key(connection_id, "cursor", "matters"), "{}")
    path = tmp_path / "b.gz"
    export_state(store, path, [connection_id])
    assert Lease(other_store, key(connection_id, "lock", "poll", "matters"), ttl=30).acquire()
    assert import_state(other_store, path).keys == 1


@pytest.mark.parametrize(
    ("damage", "line", "says"),
    [
        (lambda raw, lines: raw[: len(raw) * 2 // 3], None, "truncated"),
        (lambda raw, lines: gzip.compress("".join(lines[:-1]).encode()), 5, "expected 4 keys"),
        (lambda raw, lines: gzip.compress("".join(lines)[:-20].encode()), 5, "cut short"),
        (
            lambda raw, lines: gzip.compress("".join([*lines[:2], "{not json\n", *lines[3:]]).encode()),
            3,
            "JSON",
        ),
        (
            lambda raw, lines: gzip.compress(
                "".join([lines[0].replace('"version":1', '"version":9'), *lines[1:]]).encode()
            ),
            1,
            "version",
        ),
        (lambda raw, lines: b"not gzip at all", None, "gzip"),
        (
            lambda raw, lines: gzip.compress(
                "".join(
                    [*lines[:2], '{"k":"ppw:someone-else:x","t":"string","ttl":null,"v":"1"}\n', *lines[3:]]
                ).encode()
            ),
            3,
            "connections",
        ),
    ],
    ids=[
        "truncated-gzip",
        "last-line-missing",
        "line-cut-short",
        "bad-json",
        "version",
        "not-gzip",
        "foreign-key",
    ],
)
def test_a_damaged_file_is_refused_with_its_line(
    store: StateStore,
    other_store: StateStore,
    connection_id: str,
    tmp_path: Path,
    damage: Callable[[bytes, list[str]], bytes],
    line: int | None,
    says: str,
) -> None:
    store.set(key(connection_id, "a"), "1")
    store.set(key(connection_id, "b"), "2" * 200_000)  # big enough that a cut lands inside the stream
    store.hset(key(connection_id, "c"), {"f": "v"})
    store.zadd(key(connection_id, "d"), {"m": 1.0})
    path = tmp_path / "b.gz"
    export_state(store, path, [connection_id])
    raw = path.read_bytes()
    with gzip.open(path, "rt", encoding="utf-8") as source:
        lines = list(source)
    path.write_bytes(damage(raw, lines))
    with pytest.raises(BackupFileError, match=says) as caught:
        import_state(other_store, path)
    assert str(path) in str(caught.value)
    if line is not None:
        assert caught.value.line == line and f"line {line}:" in str(caught.value)
    assert list(other_store.scan(key(connection_id) + ":")) == []  # nothing written


def test_a_failure_part_way_says_so_and_replace_redoes_it(
    store: StateStore,
    other_store: StateStore,
    connection_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i in range(30):
        store.set(key(connection_id, "run", f"r{i:02d}"), "{}")
    path = tmp_path / "b.gz"
    export_state(store, path, [connection_id])
    monkeypatch.setattr(backup_module, "BATCH_ITEMS", 10)
    real = backup_module._apply
    calls = []

    def flaky(target: StateStore, pending: list[Any]) -> None:
        calls.append(len(pending))
        if len(calls) == 2:
            raise StateError("Redis batch failed: ConnectionError: gone")
        real(target, pending)

    monkeypatch.setattr(backup_module, "_apply", flaky)
    with pytest.raises(ImportIncomplete, match=r"line 12: .*10 of the backup's 30 lines.*--replace"):
        import_state(other_store, path)
    assert len(list(other_store.scan(key(connection_id) + ":"))) == 10
    monkeypatch.setattr(backup_module, "_apply", real)
    with pytest.raises(TargetNotEmpty):
        import_state(other_store, path)
    assert import_state(other_store, path, replace=True).keys == 30
    assert _contents(other_store, connection_id) == _contents(store, connection_id)


def test_a_failed_export_leaves_no_file(
    store: StateStore, connection_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.set(key(connection_id, "a"), "1")
    path = tmp_path / "b.gz"

    def down(k: str) -> str | None:
        raise StateError("the store went away")

    monkeypatch.setattr(store, "get", down)
    with pytest.raises(StateError):
        export_state(store, path, [connection_id])
    assert [p.name for p in tmp_path.iterdir() if p.name != "state"] == []


def test_all_connections(sqlite_store: StateStore, tmp_path: Path) -> None:
    sqlite_store.set(key("one", "cursor", "matters"), "1")
    sqlite_store.set(key("two", "cursor", "matters"), "2")
    path = tmp_path / "b.gz"
    result = export_state(sqlite_store, path)
    assert result.connections == ["one", "two"] and result.keys == 2
    target = SqliteStore(tmp_path / "restored.db")
    try:
        assert import_state(target, path).connections == ["one", "two"]
        assert target.get_many([key("one", "cursor", "matters"), key("two", "cursor", "matters")]) == [
            "1",
            "2",
        ]
    finally:
        target.close()


# the command line ---------------------------------------------------------------------------
def test_cli_export_and_import(tmp_path: Path, connection_id: str) -> None:
    source, target = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    try:
        _fill(source, connection_id)
        runner = CliRunner()

        def ppw(store: StateStore, *args: str) -> Any:
            get_settings.cache_clear()
            env = {"PPW_STATE_URL": store.url, "PPW_CONNECTION_ID": connection_id}
            return runner.invoke(app, ["state", *args], env=env, catch_exceptions=False)

        backup = tmp_path / "ppw.jsonl.gz"
        exported = ppw(source, "export", str(backup))
        assert exported.exit_code == 0, exported.output
        assert f"exported 7 keys (7 lines) of connection(s) {connection_id}" in exported.output
        as_json = ppw(source, "export", str(backup), "--json")
        assert json.loads(as_json.output)["keys"] == 7

        imported = ppw(target, "import", str(backup))
        assert imported.exit_code == 0, imported.output
        assert "imported 7 keys" in imported.output
        assert _contents(target, connection_id) == _contents(source, connection_id)

        again = ppw(target, "import", str(backup))
        assert again.exit_code == 1 and "--replace" in again.output
        replaced = ppw(target, "import", str(backup), "--replace")
        assert replaced.exit_code == 0 and "replaced 7 keys" in replaced.output

        backup.write_bytes(backup.read_bytes()[:-30])
        broken = ppw(target, "import", str(backup), "--replace")
        assert broken.exit_code == 1 and f"error: {backup}: line" in broken.output
        assert ppw(source, "export", str(backup), "--all", "--connection", "x").exit_code == 1
    finally:
        get_settings.cache_clear()
        source.close()
        target.close()


# end to end: a restored worker polls on -----------------------------------------------------
def test_a_restored_state_polls_on_without_repriming_or_refiring(
    sandbox_factory: Callable[..., SandboxServer],
    store: StateStore,
    other_store: StateStore,
    connection_id: str,
    tmp_path: Path,
) -> None:
    sandbox = sandbox_factory(seed=None)
    settings = sandbox_settings(sandbox, store.url, connection_id, rate_limit_per_second=1000.0)
    _log_in(settings, store)
    before = Harness(sandbox, store, connection_id, settings)
    try:
        [_kept, changed, later] = before.create("matters", 3)
        assert before.poll().outcome == "primed"
        before.update("matters", changed["id"], status="Closed")
        assert [(e.type, e.record_id) for e in before.poll().events] == [("updated", changed["id"])]
    finally:
        before.close()

    path = tmp_path / "backup.jsonl.gz"
    export_state(store, path, [connection_id])
    import_state(other_store, path)

    restored_settings = sandbox_settings(
        sandbox, other_store.url, connection_id, rate_limit_per_second=1000.0
    )
    after = Harness(sandbox, other_store, connection_id, restored_settings)
    try:
        assert other_store.hlen(cursors.snapshot_key(connection_id, "matters")) == 3
        after.update("matters", later["id"], status="Closed")
        result = after.poll()
        assert result.outcome == "ok"  # not primed again: the cursor and snapshots came along
        assert [(e.type, e.record_id) for e in result.events] == [("updated", later["id"])]
        assert "status" in result.events[0].changes
        assert after.poll().events == []
    finally:
        after.close()
