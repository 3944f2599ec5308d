"""Change detection and polling: PracticePanther records in, events out, nothing lost or doubled.

``Poller`` runs one poll of one resource; ``Detector`` is its pure comparison core;
``PollScheduler`` submits polls on a schedule from one elected leader; ``own_writes`` is the loop
guard's memory; ``held`` keeps flood batches for an operator; ``Reconciler`` finds deleted records
by comparing a listing of every id with the snapshots; ``snapshotter_for`` reads and
writes stored snapshots (the whole record, compressed with ``dictionaries``). See ``docs/polling.md``.
"""

from worker.polling.cursors import load_snapshots
from worker.polling.detector import Detection, Detector
from worker.polling.dictionaries import Dictionaries, DictionaryMissing
from worker.polling.own_writes import is_own_write, remember_own_record, remember_own_write
from worker.polling.poller import PollAborted, Poller, PollOptions, PollResult
from worker.polling.reconcile import ReconcileAborted, ReconcileOptions, Reconciler, ReconcileResult
from worker.polling.scheduler import PollScheduler, polled_resources
from worker.polling.snapshots import (
    Snapshot,
    Snapshotter,
    SnapshotUnreadable,
    parse_revision,
    snapshotter_for,
)
from worker.polling.status import ResourceStatus, humanize_seconds, queue_depths, resource_statuses

__all__ = [
    "Detection",
    "Detector",
    "Dictionaries",
    "DictionaryMissing",
    "PollAborted",
    "PollOptions",
    "PollResult",
    "PollScheduler",
    "Poller",
    "ReconcileAborted",
    "ReconcileOptions",
    "ReconcileResult",
    "Reconciler",
    "ResourceStatus",
    "Snapshot",
    "SnapshotUnreadable",
    "Snapshotter",
    "humanize_seconds",
    "is_own_write",
    "load_snapshots",
    "parse_revision",
    "polled_resources",
    "queue_depths",
    "remember_own_record",
    "remember_own_write",
    "resource_statuses",
    "snapshotter_for",
]
