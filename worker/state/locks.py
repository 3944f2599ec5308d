"""Expiring locks on top of the store's leases.

Used for "one poll in flight per (connection, resource)", "one OAuth token refresh at a time" and
scheduler leader election. A lease expires on its own, so a crashed holder blocks the others for at
most ``ttl`` seconds; a long-running holder calls :meth:`Lease.renew` to keep it, and learns from a
False answer that it lost the lease and must not commit what it was doing.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import TracebackType

from worker.state.base import StateError, StateStore


class LockNotAcquired(StateError):
    """Another owner held the lock for longer than we were willing to wait."""


class Lease:
    """An owner-checked, expiring claim on one key.

    Parameters
    ----------
    store:
        Any :class:`StateStore`; Redis or SQLite give the same guarantees across processes.
    key:
        The lock's key (build it with :func:`worker.state.key`).
    ttl:
        Seconds the claim lasts without renewal: the longest a crashed holder blocks others.
    owner:
        Who holds it; a random token by default, so two holders never mistake each other.
    """

    def __init__(self, store: StateStore, key: str, ttl: float, *, owner: str | None = None) -> None:
        if ttl <= 0:
            raise ValueError("a lease needs a positive ttl")
        self.store = store
        self.key = key
        self.ttl = ttl
        self.owner = owner or secrets.token_hex(16)
        self.held = False

    def __repr__(self) -> str:
        return f"Lease({self.key!r}, ttl={self.ttl}, held={self.held})"

    def acquire(self, wait: float = 0.0) -> bool:
        """Try to take the lease, retrying with backoff for up to ``wait`` seconds."""
        deadline = time.monotonic() + max(wait, 0.0)
        pause = 0.02
        while True:
            if self.store.acquire_lease(self.key, self.owner, self.ttl):
                self.held = True
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.5)

    def renew(self) -> bool:
        """Extend the lease by ``ttl``; False means someone else holds it now (we lost it)."""
        self.held = self.store.acquire_lease(self.key, self.owner, self.ttl)
        return self.held

    def release(self) -> bool:
        """Give the lease up if we still hold it; never removes another owner's claim."""
        released = self.store.release_lease(self.key, self.owner)
        self.held = False
        return released

    def __enter__(self) -> Lease:
        if not self.acquire():
            raise LockNotAcquired(f"{self.key} is held by another owner")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@contextmanager
def lock(store: StateStore, key: str, ttl: float, wait: float = 0.0) -> Iterator[Lease]:
    """Hold ``key`` for the duration of the block.

    Raises :class:`LockNotAcquired` when another owner keeps it for longer than ``wait`` seconds.
    The lease is released on exit, even when the block raises; if the process dies instead, the
    lease lapses after ``ttl``.
    """
    lease = Lease(store, key, ttl)
    if not lease.acquire(wait):
        raise LockNotAcquired(f"{key} is held by another owner (waited {wait:g}s)")
    try:
        yield lease
    finally:
        with suppress(StateError):  # it lapses after ttl; the block's own outcome matters more
            lease.release()
