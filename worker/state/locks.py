"""Expiring locks on top of the store's leases.

Used for "one poll in flight per (connection, resource)", "one OAuth token refresh at a time",
"one operator on a held batch", run and record leases and scheduler leader election. A lease
expires on its own, so a crashed holder blocks the others for at most ``ttl`` seconds. Leases are
therefore short (:data:`SHORT_TTL`), and a holder that works longer has the process's
:class:`LeaseKeeper` renew it in the background (:func:`keep_alive`); a holder learns from
``lease.held`` turning False that it lost the lease and must not commit what it was doing. How long
a *live* holder may keep a lease is a separate bound (``until`` of :meth:`LeaseKeeper.keep`): past
it the keeper stops renewing, so a stuck holder loses the lease too. docs/operations.md lists every
lease with its worst-case block after a crash.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from types import TracebackType

from worker.state.base import StateError, StateStore, WriteBatch

log = logging.getLogger(__name__)

#: Time-to-live of the leases a crash may leave behind: a dead holder blocks others this long at most.
SHORT_TTL = 30.0

#: Every lease ppw takes, as the key parts after ``ppw:<connection>:`` (``*`` ends a family of keys).
#: The modules that own them build the keys (``lock:poll:<resource>`` in worker/polling/poller.py,
#: ``run-lease:<run>`` in worker/delivery/history.py ...); tests/state/test_backup.py checks that
#: each of those builders' keys is listed here. A backup leaves them out (:mod:`worker.state.backup`):
#: a restored lease would block the work it guards until it lapsed.
LEASE_KEYS: tuple[str, ...] = (
    "lock:*",  # polls, reconciles, held-batch operations
    "run-lease:*",  # one rule run
    "rule-record:*",  # the turn of a (rule, record) pair in modes queued and single
    "scheduler:leader",  # scheduler leader election
    "oauth:refresh",  # one token refresh at a time
    "sweeper",  # the sweeper's turn
)


def is_lease_key(key: str) -> bool:
    """Whether ``key`` (a full ``ppw:<connection>:...`` key) is one of :data:`LEASE_KEYS`."""
    parts = key.split(":", 2)
    if len(parts) < 3:
        return False
    rest = parts[2]
    for pattern in LEASE_KEYS:
        if pattern.endswith("*"):
            if rest.startswith(pattern[:-1]):
                return True
        elif rest == pattern:
            return True
    return False


def new_owner() -> str:
    """``host/pid/random``: unique, so two holders never mistake each other, and telling an
    operator (or a test) which process holds a lock."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(8)}"


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
        Who holds it; by default this host and process and a random token (:func:`new_owner`).
    """

    def __init__(self, store: StateStore, key: str, ttl: float, *, owner: str | None = None) -> None:
        if ttl <= 0:
            raise ValueError("a lease needs a positive ttl")
        self.store = store
        self.key = key
        self.ttl = ttl
        self.owner = owner or new_owner()
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

    @staticmethod
    def acquire_all_and_read(leases: Sequence[Lease], keys: Sequence[str]) -> list[str | None]:
        """Take each of ``leases`` (without waiting; ``held`` says which) and read ``keys``, all in
        one round trip."""
        if not leases:
            return []
        store = leases[0].store
        taken, values = store.acquire_leases_and_get([(x.key, x.owner, x.ttl) for x in leases], keys)
        for lease, held in zip(leases, taken, strict=True):
            lease.held = held
        return values

    def release(self) -> bool:
        """Give the lease up if we still hold it; never removes another owner's claim.

        Nothing to do (no round trip) once it is not held: released already, by a batch too, or
        never taken.
        """
        if not self.held:
            return False
        released = self.store.release_lease(self.key, self.owner)
        self.held = False
        return released

    def release_in(self, batch: WriteBatch) -> None:
        """Give the lease up with ``batch``'s writes; call :meth:`released_by_batch` once it applied."""
        batch.release_lease(self.key, self.owner)

    def released_by_batch(self) -> None:
        self.held = False

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
def lock(store: StateStore, key: str, ttl: float = SHORT_TTL, wait: float = 0.0) -> Iterator[Lease]:
    """Hold ``key`` for the duration of the block, renewed in the background while it runs.

    Raises :class:`LockNotAcquired` when another owner keeps it for longer than ``wait`` seconds.
    The lease is released on exit, even when the block raises; if the process dies instead, the
    lease lapses after ``ttl``, however long the block would have taken.
    """
    with try_lock(store, key, ttl, wait=wait) as lease:
        if lease is None:
            raise LockNotAcquired(f"{key} is held by another owner (waited {wait:g}s)")
        yield lease


@contextmanager
def try_lock(
    store: StateStore, key: str, ttl: float = SHORT_TTL, *, wait: float = 0.0, until: float | None = None
) -> Iterator[Lease | None]:
    """:func:`lock` for work that another owner's lease makes unnecessary (a poll, a reconcile):
    the block gets ``None`` instead of an exception, so a raise inside it is never mistaken for
    "busy". Renewal stops at the monotonic time ``until``: past its time budget the work may lose
    the lease to a newer owner rather than hold it for ever."""
    lease = Lease(store, key, ttl)
    if not lease.acquire(wait):
        yield None
        return
    try:
        with keep_alive(lease, until=until):
            yield lease
    finally:
        with suppress(StateError):  # it lapses after ttl; the block's own outcome matters more
            lease.release()


class LeaseKeeper:
    """Renews every lease it keeps from one thread, each a third of its ttl after the last renewal.

    A worker runs many short runs at once; a renewal thread per run cost more than the run's own
    work, and so would waking one shared thread at every start and end of a run. The keeper
    therefore wakes on a tick (a sixth of the shortest ttl it has seen) and is only woken early
    when a lease with a shorter ttl arrives. If a renewal finds the lease taken (the process
    stalled longer than the ttl), ``lease.held`` turns False and the holder stops before its next
    step.
    """

    def __init__(self) -> None:
        self._due: dict[Lease, float] = {}
        self._until: dict[Lease, float] = {}
        self._renewing: set[Lease] = set()
        self._changed = threading.Condition()
        self._tick = 60.0
        self._thread: threading.Thread | None = None

    @contextmanager
    def keep(self, lease: Lease, *, until: float | None = None) -> Iterator[Lease]:
        """Keep ``lease`` renewed until the block ends; no renewal happens after it ended.

        ``until`` (a :func:`time.monotonic` time) bounds a holder that is alive but stuck: the
        keeper renews no more after it, so the lease lapses a ``ttl`` later and the holder finds
        ``lease.held`` False at its next check.
        """
        with self._changed:
            self._due[lease] = time.monotonic() + lease.ttl / 3
            if until is not None:
                self._until[lease] = until
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)
                self._thread.start()
            if lease.ttl / 6 < self._tick:
                self._tick = lease.ttl / 6
                self._changed.notify_all()
        try:
            yield lease
        finally:
            self.forget(lease)

    def forget(self, lease: Lease) -> None:
        """Stop renewing ``lease``; returns once no renewal of it is under way, so a release that
        follows cannot be undone by a renewal re-taking the lease."""
        with self._changed:
            self._due.pop(lease, None)
            self._until.pop(lease, None)
            while lease in self._renewing:
                self._changed.wait()

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait(self._tick)
                now = time.monotonic()
                due = [lease for lease, at in self._due.items() if at <= now + self._tick]
                for lease in [x for x in due if self._until.get(x, now) < now]:
                    log.warning("lease %s outlived its time limit; no longer renewed", lease.key)
                    del self._due[lease]
                    del self._until[lease]
                    due.remove(lease)
                for lease in due:
                    self._due[lease] = now + lease.ttl / 3
                self._renewing.update(due)
            for lease in due:
                self._renew(lease)

    def _renew(self, lease: Lease) -> None:
        try:
            if not lease.renew():
                log.warning("lease %s was taken over while this worker held it", lease.key)
                with self._changed:
                    self._due.pop(lease, None)
        except StateError as exc:  # the store is down: keep trying, the ttl is the limit
            log.warning("could not renew lease %s: %s", lease.key, exc)
        finally:
            with self._changed:
                self._renewing.discard(lease)
                self._changed.notify_all()


_KEEPER = LeaseKeeper()


def keep_alive(lease: Lease, *, until: float | None = None) -> AbstractContextManager[Lease]:
    """Renew ``lease`` (by the process-wide :class:`LeaseKeeper`) until the block ends, or until
    the monotonic time ``until``."""
    return _KEEPER.keep(lease, until=until)


def stop_keeping(lease: Lease) -> None:
    """Stop renewing ``lease`` ahead of releasing it (see :meth:`LeaseKeeper.forget`)."""
    _KEEPER.forget(lease)
