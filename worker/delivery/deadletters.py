"""ppw's own dead-letter store: runs that need a person, with the reason.

Kept in the state store rather than in the broker's dead-letter queue, so ``ppw dlq list`` and
``ppw dlq replay`` work the same on Redis, RabbitMQ and the embedded memory broker, and a dead
letter names the rule, the step that failed and why, not an opaque message.
"""

from __future__ import annotations

import time

from worker.delivery.history import SCAN_LIMIT, Position, Run, RunHistory, RunPage, RunQuery
from worker.state.base import StateStore, key


class DeadLetters:
    def __init__(self, store: StateStore, history: RunHistory) -> None:
        self.store = store
        self.history = history

    @staticmethod
    def _index(connection: str) -> str:
        return key(connection, "dlq")

    def add(self, run: Run, reason: str, *, failed_step: str | None) -> Run:
        """Mark ``run`` dead with ``reason``; it stays (no expiry) until replayed or discarded."""
        now = time.time()
        dead = run.model_copy(
            update={
                "status": "dead",
                "error": reason,
                "failed_step": failed_step,
                "dead_at": now,
                "finished_at": now,
                "next_retry_at": None,
            }
        )
        self.history.save(dead)
        self.store.zadd(self._index(run.connection), {run.id: now})
        return dead

    def ids(self, connection: str) -> list[str]:
        return [m for m, _ in self.store.zrange_by_score(self._index(connection))]

    def entries(self, connection: str, *, rule: str | None = None) -> list[Run]:
        """Dead runs, oldest first."""
        runs: list[Run] = []
        for run_id in self.ids(connection):
            run = self.history.find(connection, run_id)
            if run is None or run.status != "dead":
                self.store.zrem(self._index(connection), run_id)
                continue
            if rule is None or run.rule_id == rule:
                runs.append(run)
        return runs

    def page(
        self,
        connection: str,
        *,
        rule: str | None = None,
        after: Position | None = None,
        before: Position | None = None,
        size: int = 50,
    ) -> RunPage:
        """One page of dead runs, oldest first, from a position (the time it died and its id):
        an index range and one read of its runs, never the whole store. A rule filter checks the
        runs read (at most :data:`~worker.delivery.history.SCAN_LIMIT` entries a page)."""
        return self.history.walk(
            connection,
            self._index(connection),
            RunQuery(status="dead", rule=rule),
            after=after,
            before=before,
            size=size,
            scan_limit=SCAN_LIMIT,
            ascending=True,
            belongs=lambda run: run.status == "dead",
        )

    def prune(self, connection: str) -> int:
        """Drop the entries whose run is gone or no longer dead (what :meth:`entries` drops as it
        lists them); a dead run itself is kept until it is replayed or discarded."""
        ids = self.ids(connection)
        if not ids:
            return 0
        raws = self.store.get_many([self.history.key(connection, r) for r in ids])
        runs = [self.history.parse(raw) for raw in raws]
        stale = [r for r, run in zip(ids, runs, strict=True) if run is None or run.status != "dead"]
        if stale:
            self.store.zrem(self._index(connection), *stale)
        return len(stale)

    def remove(self, connection: str, run_id: str) -> bool:
        return self.store.zrem(self._index(connection), run_id) > 0

    def count(self, connection: str) -> int:
        return self.store.zcard(self._index(connection))
