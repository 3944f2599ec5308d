"""Events kept in the state store, so broker messages carry only ids.

A record's fields are privileged client data; brokers log and keep messages (RabbitMQ management
UI, Redis dumps, Dramatiq's dead-letter queues), so the poller's event goes here and the dispatch
message names it by id. The ``pending`` index lists events emitted but not yet fully dispatched:
with the in-process memory broker, ``ppw run`` re-sends them after a restart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from worker.errors import PpwError
from worker.events import Event
from worker.state.base import StateStore, WriteBatch, key


class EventNotFound(PpwError, LookupError):
    """The event expired (past retention) or was never stored."""


class EventStore:
    def __init__(self, store: StateStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl

    @staticmethod
    def key(connection: str, event_id: str) -> str:
        return key(connection, "event", event_id)

    @staticmethod
    def _pending_key(connection: str) -> str:
        return key(connection, "events-pending")

    def save(self, event: Event) -> None:
        """Store ``event`` (kept for the retention period) and mark it pending dispatch."""
        self.save_many([event])

    def save_many(self, events: Sequence[Event]) -> None:
        """Store ``events`` and mark them pending, in one atomic write (a poll emits a chunk at once)."""
        if not events:
            return
        now = time.time()
        with self.store.batch() as batch:
            for event in events:
                batch.set(self.key(event.connection, event.id), event.model_dump_json(), ttl=self.ttl)
            for connection in {e.connection for e in events}:
                batch.zadd(
                    self._pending_key(connection), {e.id: now for e in events if e.connection == connection}
                )

    def load(self, connection: str, event_id: str) -> Event:
        return self.parse(event_id, self.store.get(self.key(connection, event_id)))

    @staticmethod
    def parse(event_id: str, raw: str | None) -> Event:
        """The event stored as ``raw`` (read with other keys in one round trip by the caller)."""
        if raw is None:
            raise EventNotFound(f"event {event_id} is not in the state store (expired or never stored)")
        return Event.model_validate_json(raw)

    def extend(self, event: Event, *, ttl: float, batch: WriteBatch) -> None:
        """Keep ``event`` for ``ttl`` seconds (at least the retention): a run waits on it."""
        batch.set(self.key(event.connection, event.id), event.model_dump_json(), ttl=max(ttl, self.ttl))

    def keep(self, event: Event) -> None:
        """Keep ``event`` past retention: a dead-lettered run still needs it for a replay."""
        self.store.set(self.key(event.connection, event.id), event.model_dump_json())

    def dispatched(self, connection: str, *event_ids: str, batch: WriteBatch | None = None) -> None:
        """No longer pending; written into ``batch`` when given (dispatch's closing write)."""
        if not event_ids:
            return
        if batch is not None:
            batch.zrem(self._pending_key(connection), *event_ids)
        else:
            self.store.zrem(self._pending_key(connection), *event_ids)

    def prune_pending(self, connection: str) -> int:
        """Forget pending entries older than the retention whose events expired: dispatch would
        find nothing to dispatch and settle them the same way. Returns how many were dropped."""
        cutoff = time.time() - self.ttl
        index = self._pending_key(connection)
        old = [m for m, _ in self.store.zrange_by_score(index, maximum=cutoff)]
        if not old:
            return 0
        raws = self.store.get_many([self.key(connection, m) for m in old])
        gone = [m for m, raw in zip(old, raws, strict=True) if raw is None]
        if gone:
            self.store.zrem(index, *gone)
        return len(gone)

    def pending(self, connection: str, older_than: float = 0.0) -> list[str]:
        """Ids of events not yet fully dispatched, oldest first."""
        cutoff = time.time() - older_than
        return [m for m, _ in self.store.zrange_by_score(self._pending_key(connection), maximum=cutoff)]
