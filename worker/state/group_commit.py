"""Group commit: the writes of several threads that arrive together share one durable commit.

An embedded worker's run threads each end a step with a write that must be durable before the
step acts (``synchronous=FULL``: an ``fsync`` per ``COMMIT``). Committed one by one, they also
queue for SQLite's write lock through its busy handler, which sleeps 1, 2, 5, 10 … ms between
tries while the lock is free again after a fraction of one. Measured on the embedded pipeline,
the run threads spent more than half their time asleep there (``docs/benchmarks.md``).

A :class:`CommitQueue` is a leader/follower queue in one process (after LevelDB's writer queue):

* a writer joins the queue; the one at its front is the **leader**: it takes everything queued
  (up to ``max_group``) and hands the group to ``commit`` (one transaction, one ``COMMIT``);
* the others are **followers**: they wait on their own event and return when the group they were
  in has committed, with their own result or error, never before the commit is durable;
* the leader then wakes the new front of the queue, which leads the writes that queued meanwhile.

``commit`` runs each member's work and records its own ``result`` or ``error`` (a member whose
work failed is rolled back alone, see :class:`worker.state.sqlite.SqliteStore`); if ``commit``
itself raises, nothing of the group landed and every member that had not failed on its own fails
with a :class:`StateError`, so no caller believes its write landed. The queue gives one process's
writes a turn each without sleeping; another process on the same file still meets them at the
database's lock.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from worker.state.base import StateError

T = TypeVar("T")
Tx = TypeVar("Tx")

#: Writes one transaction may carry: bounds how long the write lock is held and a follower waits.
MAX_GROUP = 64


class Member(Generic[Tx]):
    """One caller's write waiting in the queue: its work, then its own outcome."""

    __slots__ = ("done", "error", "result", "woken", "work")

    def __init__(self, work: Callable[[Tx], Any]) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.woken = threading.Event()


class CommitQueue(Generic[Tx]):
    """Joins concurrent writes into groups for ``commit``; :meth:`submit` returns once durable.

    ``commit(members)`` applies every member's ``work`` in one transaction and sets each member's
    ``result`` or ``error``; it raises when the transaction as a whole did not commit.
    """

    def __init__(self, commit: Callable[[Sequence[Member[Tx]]], None], *, max_group: int = MAX_GROUP) -> None:
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, got {max_group}")
        self._commit = commit
        self._max_group = max_group
        #: transactions committed or tried, and the writes they carried (for benchmarks and status)
        self.groups = 0
        self.members = 0
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Member[Tx]] = deque()
        self._pid = os.getpid()

    def submit(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in the next group transaction; its result once that transaction committed."""
        if self._pid != os.getpid():  # a forked child inherits the queue, not the threads in it
            self._reset()
        member: Member[Tx] = Member(work)
        with self._lock:
            self._queue.append(member)
            leading = self._queue[0] is member
        if not leading:
            member.woken.wait()  # set when our group is done, or when we are the front
        if not member.done:
            self._lead()
        if member.error is not None:
            raise member.error
        return member.result  # type: ignore[no-any-return]

    def _lead(self) -> None:
        with self._lock:
            group = list(itertools.islice(self._queue, self._max_group))
        self.groups += 1
        self.members += len(group)
        try:
            self._commit(group)
        except BaseException as exc:
            for member in group:
                if member.error is None:
                    member.error = _group_failed(exc, len(group))
            if not isinstance(exc, Exception):
                raise  # an interrupt of the leader's thread; the finally still hands over
        finally:
            with self._lock:
                for _ in group:
                    self._queue.popleft()
                front = self._queue[0] if self._queue else None
            for member in group:
                member.done = True
                member.woken.set()
            if front is not None:
                front.woken.set()


def _group_failed(exc: BaseException, size: int) -> StateError:
    """The error each member of a failed group gets: its own object, since each raises it."""
    if isinstance(exc, StateError) and size == 1:
        return exc
    failure = StateError(str(exc) if isinstance(exc, StateError) else f"the write did not commit: {exc!r}")
    failure.__cause__ = exc
    return failure
