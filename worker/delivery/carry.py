"""The carry: the endings of a message's finished runs, held back to go out with its next write.

A run's ending (its last ledger entry, its history, its leases given back) must be stored before
anything that depends on it, not at once: the next run's first write comes a moment later,
before that run acts, and takes it along, so a message of ten one-step runs costs eleven writes
instead of twenty. Rules applied here:

* an ending taken into the carry keeps its order: the run's held-back writes, then its history,
  then its leases given back;
* the carry goes out whole, in one atomic batch, with the message's next write
  (:meth:`Carry.write_into`, then :meth:`Carry.written`) or on its own (:meth:`Carry.flush`);
* a lease the carry gives back is not released by anyone else meanwhile, and whoever waits
  for it (a later run of the same rule for the same record) flushes the carry first
  (:meth:`Carry.releases`); the end of the message flushes what is left;
* a lease counts as released only once the carried write is applied;
* a crash before the write loses nothing: the run's ledger still says its step started, so a
  retry repeats it as uncertain, as a crash right after the step would.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.delivery.history import Run, RunHistory
from worker.state.base import StateStore, WriteBatch
from worker.state.locks import Lease
from worker.state.recording import RecordingBatch


class Carry:
    """The writes a message carries to its next write, and the leases they give back."""

    def __init__(self) -> None:
        self.pending = RecordingBatch()
        self.leases: list[Lease] = []

    def take(self, pending: RecordingBatch, history: RunHistory, run: Run, leases: Sequence[Lease]) -> None:
        """Carry a run's ending: its held-back writes, its history as ``run`` and its leases."""
        pending.replay(self.pending)
        history.write(self.pending, run)
        for lease in leases:
            lease.release_in(self.pending)
        self.leases += leases

    def releases(self, lease_key: str) -> bool:
        """Whether the carried write gives that lease back (so it must not be released now, and
        whoever waits for it must flush first)."""
        return any(carried.key == lease_key for carried in self.leases)

    def write_into(self, batch: WriteBatch) -> None:
        self.pending.replay(batch)

    def written(self) -> None:
        """The carried writes applied: their leases are given back."""
        for lease in self.leases:
            lease.released_by_batch()
        self.pending = RecordingBatch()
        self.leases = []

    def flush(self, store: StateStore) -> None:
        """Write what is carried now, in one batch of its own (nothing: no write)."""
        if not self.pending:
            return
        with store.batch() as batch:
            self.write_into(batch)
        self.written()
