"""The state store interface: a few storage primitives that Redis and SQLite both provide.

Cursors, snapshots, held batches, the step ledger, run history, tokens, locks and leases are all
built on these primitives by the modules that own those concepts (``worker/polling/cursors.py``,
``worker/practicepanther/tokens.py`` ...), so a new kind of state never needs a change in both
backends. Every key is built with :func:`key`, which namespaces it by connection id.

Values are ``str`` (callers store JSON). Times-to-live are seconds (float allowed).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import NamedTuple

from worker.errors import PpwError

PREFIX = "ppw"


def key(connection: str, *parts: str) -> str:
    """``ppw:<connection>:<part>:<part>`` so one deployment can serve several PP accounts."""
    return ":".join((PREFIX, connection, *parts))


class Turn(NamedTuple):
    """A ``mode: queued`` run joining its record's queue: ``member`` with ``score`` in the sorted
    set ``queue``, wanting the lease ``lease`` (for ``ttl`` seconds) once it is first."""

    queue: str
    member: str
    score: float
    lease: str
    ttl: float


@dataclass(frozen=True)
class Durability:
    """What a store's configuration means for ppw's records (:mod:`worker.state.durability`):
    ``errors`` refuse a start, ``warnings`` are logged."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class StateError(PpwError, RuntimeError):
    """The state backend failed (unreachable, disk full, locked ...). Nothing was written.

    Transient: the store is down or locked now, and a retry once it is back may succeed.
    """

    @property
    def transient(self) -> bool:
        return True


class WriteBatch(abc.ABC):
    """Writes collected and applied atomically (all or nothing) when the batch context exits."""

    @abc.abstractmethod
    def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    @abc.abstractmethod
    def delete(self, *keys: str) -> None: ...

    @abc.abstractmethod
    def hset(self, key: str, mapping: Mapping[str, str]) -> None: ...

    @abc.abstractmethod
    def hdel(self, key: str, *fields: str) -> None: ...

    @abc.abstractmethod
    def hset_bytes(self, key: str, mapping: Mapping[str, bytes]) -> None:
        """:meth:`hset` of binary values (compressed snapshots), stored as the bytes given."""

    @abc.abstractmethod
    def zadd(self, key: str, mapping: Mapping[str, float]) -> None: ...

    @abc.abstractmethod
    def zrem(self, key: str, *members: str) -> None: ...

    @abc.abstractmethod
    def release_lease(self, key: str, owner: str) -> None:
        """Release the lease ``key`` if ``owner`` still holds it (with the batch's other writes)."""


class StateStore(abc.ABC):
    """Storage primitives. Implementations are safe to share between threads."""

    url: str

    # plain keys -----------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def get_many(self, keys: Sequence[str]) -> list[str | None]: ...

    @abc.abstractmethod
    def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    @abc.abstractmethod
    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Set only when the key does not exist (or has expired); True when this call set it."""

    @abc.abstractmethod
    def delete(self, *keys: str) -> int:
        """Delete keys of any type; returns how many existed."""

    @abc.abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add to an integer counter; ``ttl`` applies when the counter is created."""

    @abc.abstractmethod
    def ttl(self, key: str) -> float | None:
        """Seconds left to live; None when the key has no expiry or does not exist."""

    @abc.abstractmethod
    def scan(self, prefix: str) -> Iterator[str]:
        """Every live plain, hash or sorted-set key starting with ``prefix``."""

    @abc.abstractmethod
    def key_type(self, key: str) -> str | None:
        """``"string"``, ``"hash"`` or ``"zset"`` for a live key; None when it does not exist (or
        has expired). With :meth:`scan` and :meth:`ttl` it lets a backup enumerate a keyspace."""

    def set_many_if_absent(self, values: Mapping[str, str], ttl: float | None = None) -> frozenset[str]:
        """:meth:`set_if_absent` for several keys in one round trip; returns the keys this call set.

        Each key is decided on its own (not all or nothing): dispatch creates the runs of a whole
        batch of events at once and needs to know which ones another dispatcher made first.
        """
        return frozenset(k for k, v in values.items() if self.set_if_absent(k, v, ttl))

    def incr_many(self, keys: Sequence[str], ttl: float | None = None) -> list[int]:
        """:meth:`incr` by one for several counters in one round trip (the breaker's fire counts)."""
        return [self.incr(k, 1, ttl) for k in keys]

    # leases: owner-checked, expiring exclusive claims (locks, leader election) -----------------
    @abc.abstractmethod
    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Claim ``key`` for ``owner`` for ``ttl`` seconds; renews when ``owner`` already holds it."""

    @abc.abstractmethod
    def release_lease(self, key: str, owner: str) -> bool:
        """Release only if ``owner`` still holds it; True when released."""

    def acquire_leases_and_get(
        self, claims: Sequence[tuple[str, str, float]], keys: Sequence[str]
    ) -> tuple[list[bool], list[str | None]]:
        """:meth:`acquire_lease` for each ``(key, owner, ttl)`` of ``claims``, and :meth:`get_many`
        of ``keys``, in one round trip: a worker claims a whole message's runs and reads their
        records in one go. The keys are read whichever claims succeed.
        """
        taken = [self.acquire_lease(k, owner, ttl) for k, owner, ttl in claims]
        return taken, self.get_many(keys)

    # hashes ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def hget(self, key: str, field: str) -> str | None: ...

    @abc.abstractmethod
    def hmget(self, key: str, fields: Sequence[str]) -> list[str | None]: ...

    @abc.abstractmethod
    def hset(self, key: str, mapping: Mapping[str, str]) -> None: ...

    @abc.abstractmethod
    def hdel(self, key: str, *fields: str) -> int: ...

    @abc.abstractmethod
    def hgetall(self, key: str) -> dict[str, str]: ...

    @abc.abstractmethod
    def hmget_bytes(self, key: str, fields: Sequence[str]) -> list[bytes | None]:
        """:meth:`hmget` returning the stored bytes undecoded (a text value comes back UTF-8).

        Binary values cost what they weigh: base64 would add a third to every compressed
        snapshot, and on Redis that crosses an allocator size class (docs/benchmarks.md).
        """

    @abc.abstractmethod
    def hset_bytes(self, key: str, mapping: Mapping[str, bytes]) -> None:
        """:meth:`hset` of binary values; :meth:`hmget_bytes` reads them back."""

    @abc.abstractmethod
    def hlen(self, key: str) -> int: ...

    @abc.abstractmethod
    def hkeys(self, key: str) -> list[str]:
        """The hash's field names without their values (the ids a binary snapshot hash tracks)."""

    # sorted sets ----------------------------------------------------------------------------
    @abc.abstractmethod
    def zadd(self, key: str, mapping: Mapping[str, float]) -> None: ...

    @abc.abstractmethod
    def zrem(self, key: str, *members: str) -> int: ...

    @abc.abstractmethod
    def zrange_by_score(
        self,
        key: str,
        minimum: float = float("-inf"),
        maximum: float = float("inf"),
        *,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[tuple[str, float]]: ...

    def take_turns(self, turns: Sequence[Turn]) -> list[tuple[str, bool]]:
        """For each turn, in order: join its queue and, if its member is first there, take its
        lease for the member. All in one round trip, so a message of queued runs asks once.

        Returns, per turn, the first member of its queue and whether the lease was taken.
        """
        answers = []
        for turn in turns:
            self.zadd(turn.queue, {turn.member: turn.score})
            first = self.zrange_by_score(turn.queue, limit=1)[0][0]
            taken = first == turn.member and self.acquire_lease(turn.lease, turn.member, turn.ttl)
            answers.append((first, taken))
        return answers

    def take_turn(self, turn: Turn) -> tuple[str, bool]:
        """:meth:`take_turns` for one turn."""
        [answer] = self.take_turns([turn])
        return answer

    @abc.abstractmethod
    def zcard(self, key: str) -> int: ...

    @abc.abstractmethod
    def zcount(self, key: str, minimum: float = float("-inf"), maximum: float = float("inf")) -> int:
        """Members scored from ``minimum`` to ``maximum`` (both included), counted by the backend
        without returning them: a rule's runs in the last day, the size of a filtered list."""

    # atomic groups of writes ----------------------------------------------------------------
    @abc.abstractmethod
    def batch(self) -> AbstractContextManager[WriteBatch]:
        """``with store.batch() as b: b.set(...); b.hset(...)``: applied all together or not at all."""

    # lifecycle ------------------------------------------------------------------------------
    def durability(self) -> Durability:
        """What the backend's configuration means for the records ppw keeps in it
        (:mod:`worker.state.durability`); nothing to say by default."""
        return Durability()

    @abc.abstractmethod
    def ping(self) -> bool:
        """True when the backend answers; used by ``/readyz``."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def size_bytes(self, prefix: str) -> int:
        """Approximate bytes used by keys under ``prefix`` (benchmarks report bytes per record)."""
        raise NotImplementedError
