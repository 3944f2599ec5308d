"""The journal of one attempt at a run: its writes batched, the run's history riding along.

Rules applied here:

* ledger entries and other writes of the attempt are recorded (:attr:`Journal.pending`) and go out
  with the run's history as it is then, in one atomic batch that also takes what the message
  carries (:class:`~worker.delivery.carry.Carry`);
* the runner flushes the entry saying a step *started* before the step acts; the one saying it is
  *done* goes out with the next write (the next step's start, or the run's ending), so a crash can
  cost at most a repeat of the uncertain step, which its executor checks for (markers,
  ``Idempotency-Key``): two writes per step instead of four;
* the run's ``last`` write, which also gives back its leases, is not written but carried to the
  message's next write; no renewal may follow it, so the lease keepers let go first;
* step traces change the run in memory only (:func:`trace`), until the next flush.
"""

from __future__ import annotations

from typing import Any

from worker.delivery.app import DeliveryApp
from worker.delivery.carry import Carry
from worker.delivery.history import Run
from worker.delivery.ledger import RunKey
from worker.state.locks import Lease, stop_keeping
from worker.state.recording import RecordingBatch


class Journal:
    """The writes of one attempt, batched: the run's history rides along with its ledger entries."""

    def __init__(self, app: DeliveryApp, run: Run, leases: tuple[Lease, ...], carry: Carry) -> None:
        self.app = app
        self.run = run
        self.key = RunKey.of(run)
        self.leases = leases
        self.carry = carry
        self.pending = RecordingBatch()

    def trace(self, step_id: str, **changes: Any) -> None:
        self.run = trace(self.run, step_id, **changes)

    def flush(self, *, last: bool = False) -> None:
        """Write what is pending and the run as it is now, in one atomic batch with what the
        message carries. The ``last`` write of a run, which also gives up its leases (no renewal
        may follow, so the keeper lets go first), is carried instead."""
        if last:
            for lease in self.leases:
                stop_keeping(lease)
            self.carry.take(self.pending, self.app.history, self.run, self.leases)
        else:
            with self.app.store.batch() as batch:
                self.carry.write_into(batch)
                self.pending.replay(batch)
                self.app.history.write(batch, self.run)
            self.carry.written()
        self.pending = RecordingBatch()


def trace(run: Run, step_id: str, **changes: Any) -> Run:
    """``run`` with the trace of step ``step_id`` updated by ``changes``."""
    steps = [s.model_copy(update=changes) if s.id == step_id else s for s in run.steps]
    return run.model_copy(update={"steps": steps})
