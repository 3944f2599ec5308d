"""State size by kind (``ppw status``) on both backends."""

from __future__ import annotations

from worker.state.base import StateStore, key
from worker.state.usage import usage_by_kind


def test_keys_and_bytes_per_kind(store: StateStore, connection_id: str) -> None:
    assert usage_by_kind(store, connection_id) == []
    for n in range(3):
        store.set(key(connection_id, "run", f"r{n}"), "x" * 2000)
    store.zadd(key(connection_id, "runs"), {f"r{n}": n for n in range(3)})  # its prefix is "run"'s
    store.zadd(key(connection_id, "runs-active"), {"r2": 2})
    store.hset(key(connection_id, "snap", "matters"), {"m1": "y" * 500})
    store.set(key(f"{connection_id}-other", "run", "r9"), "another connection's")
    try:
        usage = {u.kind: u for u in usage_by_kind(store, connection_id)}
        assert {k: u.keys for k, u in usage.items()} == {"run": 3, "runs": 1, "runs-active": 1, "snap": 1}
        sizes = {k: u.bytes or 0 for k, u in usage.items()}
        assert sizes["run"] >= 3 * 2000 and sizes["run"] < 3 * 2000 + 3000  # not the indexes too
        assert 0 < sizes["runs"] < 2000 and 0 < sizes["runs-active"] < 2000
        assert 500 <= sizes["snap"] < 2000
        assert next(iter(usage)) == "run"  # the largest first
    finally:
        store.delete(key(f"{connection_id}-other", "run", "r9"))
