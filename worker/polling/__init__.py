"""Change detection and polling: PracticePanther records in, events out, nothing lost or doubled.

``Poller`` runs one poll of one resource; ``Detector`` is its pure comparison core;
``PollScheduler`` submits polls on a schedule from one elected leader; ``own_writes`` is the loop
guard's memory; ``held`` keeps flood batches for an operator. See ``docs/polling.md``.
"""

from worker.polling.detector import Detection, Detector
from worker.polling.own_writes import is_own_write, remember_own_record, remember_own_write
from worker.polling.poller import PollAborted, Poller, PollOptions, PollResult
from worker.polling.scheduler import PollScheduler, polled_resources

__all__ = [
    "Detection",
    "Detector",
    "PollAborted",
    "PollOptions",
    "PollResult",
    "PollScheduler",
    "Poller",
    "is_own_write",
    "polled_resources",
    "remember_own_record",
    "remember_own_write",
]
