"""Locks and leases built on the store, on both backends."""

from __future__ import annotations

import threading
import time

import pytest

from worker.state import StateStore, key
from worker.state.locks import Lease, LockNotAcquired, keep_alive, lock


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


def test_lock_outlasting_its_ttl_is_renewed_in_the_background(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "lock", "held", "batch")
    with lock(store, k, ttl=0.3) as held:
        threading.Event().wait(1.0)  # three ttls: only the lease keeper keeps it
        assert held.held and store.get(k) == held.owner
        with pytest.raises(LockNotAcquired):
            Lease(store, k, ttl=30).__enter__()
    assert store.get(k) is None


def test_the_keeper_stops_renewing_a_stuck_holder_at_its_limit(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "lock", "poll", "matters")
    lease = Lease(store, k, ttl=0.3)
    assert lease.acquire()
    with keep_alive(lease, until=time.monotonic() + 0.4):
        threading.Event().wait(0.2)
        assert store.get(k) == lease.owner  # renewed while within its limit
        deadline = time.monotonic() + 5
        while store.get(k) is not None:  # past it: no more renewals, so it lapses by itself
            assert time.monotonic() < deadline, "the lease was renewed past its limit"
            threading.Event().wait(0.05)
    assert Lease(store, k, ttl=30).acquire()  # someone else may take it now
