"""Locks and leases built on the store, on both backends."""

from __future__ import annotations

import threading
import time

import pytest

from worker.state import StateStore, key
from worker.state.locks import Lease, LockNotAcquired, lock


def test_lock_excludes_and_releases(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "lock", "poll", "matters")
    with lock(store, k, ttl=30) as held:
        assert held.held
        with pytest.raises(LockNotAcquired), lock(store, k, ttl=30):
            pass
    with lock(store, k, ttl=30):
        pass


def test_lock_released_when_block_raises(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "lock")
    with pytest.raises(ZeroDivisionError), lock(store, k, ttl=30):
        raise ZeroDivisionError
    assert store.get(k) is None


def test_lock_waits_for_release(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "lock")
    first = Lease(store, k, ttl=30)
    assert first.acquire()
    released = threading.Event()

    def release_soon() -> None:
        time.sleep(0.1)
        first.release()
        released.set()

    thread = threading.Thread(target=release_soon)
    thread.start()
    with lock(store, k, ttl=30, wait=10) as second:
        assert released.is_set()
        assert second.owner != first.owner
    thread.join()


def test_lease_renew_detects_loss(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "leader")
    mine = Lease(store, k, ttl=0.2)
    assert mine.acquire()
    assert mine.renew()
    deadline = time.monotonic() + 5
    theirs = Lease(store, k, ttl=30)
    while not theirs.acquire():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert mine.renew() is False
    assert mine.held is False
    assert mine.release() is False  # never removes the new holder's claim
    assert store.get(k) == theirs.owner


def test_lease_context_manager(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "refresh")
    with Lease(store, k, ttl=30) as lease:
        assert store.get(k) == lease.owner
        assert "owner" not in repr(lease) or lease.owner not in repr(lease)
    assert store.get(k) is None


def test_invalid_ttl(store: StateStore, connection_id: str) -> None:
    with pytest.raises(ValueError):
        Lease(store, key(connection_id, "x"), ttl=0)
