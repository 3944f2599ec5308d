"""The pruning pass: the indexes of the state store forget what their records no longer hold.

Records expire on their own (events, runs, ledger entries and markers carry TTLs, see
docs/operations.md "What the state store holds and how long"), but a sorted-set index does not
know when one of its members' records expired. The run history and the dead letters prune
lazily as they are listed; this pass does it for every index on a schedule, so state stops
growing in a worker nobody queries. The scheduler's leader runs it every :data:`PRUNE_INTERVAL`.

The run history's indexes by status, rule, resource and record forget a run with its time index
entry (:meth:`~worker.delivery.history.RunHistory.prune`).

Only entries whose record is gone (or, for dead letters, no longer dead) are dropped: a dead
run is kept until replayed or discarded, a waiting run until its timer wakes it, a held batch
until released or discarded, and an entry younger than the retention is never looked at.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from worker.delivery.app import DeliveryApp
from worker.polling import held

log = logging.getLogger(__name__)

#: Seconds between two pruning passes.
PRUNE_INTERVAL = 300.0


@dataclass(frozen=True)
class Pruned:
    """Index entries dropped by one pass, per index."""

    runs: int = 0
    runs_active: int = 0
    events_pending: int = 0
    dlq: int = 0
    held: int = 0

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


def prune(app: DeliveryApp, connection: str) -> Pruned:
    """One pass over ``connection``'s indexes (building the run history's own, the first time,
    for a store written before they existed)."""
    built = app.history.ensure_indexes(connection)
    if built:
        log.info("indexed %d runs by status, rule, resource and record (once, for the console)", built)
    active = app.history.prune_active(connection)  # before the runs: their pass forgets these too
    pruned = Pruned(
        runs=app.history.prune(connection),
        runs_active=active,
        events_pending=app.events.prune_pending(connection),
        dlq=app.dead_letters.prune(connection),
        held=held.prune_index(app.store, connection),
    )
    if pruned.total:
        log.info(
            "pruned %d index entries whose records are gone: %s",
            pruned.total,
            ", ".join(f"{name} {n}" for name, n in asdict(pruned).items() if n),
        )
    return pruned
