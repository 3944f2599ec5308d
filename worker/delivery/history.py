"""Run history: one record per rule run, what it saw, what it sent, what came back.

A run is one rule applied to one event. Its id is derived from the event id and rule id, so
dispatching the same event twice (an overlapping poll, a redelivered message) finds the same run
instead of starting another. The record carries the snapshot of the rule definition the first
attempt used, so a retry or replay runs the same steps even if the rule file was edited since
(``ppw dlq replay --with-current-rule`` opts into the new definition).

Everything stored here passed through the secret scrubber: rendered requests show header names and
``[redacted]`` values, Slack webhooks appear by name, never by URL.

Records expire after the retention period, except dead-lettered ones, which are kept until they are
replayed or discarded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from worker.errors import PpwError
from worker.state.base import StateStore, WriteBatch, key

RunStatus = Literal[
    "queued", "running", "retrying", "waiting", "succeeded", "skipped", "cancelled", "paused", "dead"
]
TERMINAL: frozenset[str] = frozenset({"succeeded", "skipped", "cancelled", "paused", "dead"})
STATUSES: tuple[str, ...] = (
    "queued",
    "running",
    "retrying",
    "waiting",
    "succeeded",
    "skipped",
    "cancelled",
    "paused",
    "dead",
)


def run_id_for(event_id: str, rule_id: str) -> str:
    """The run of ``rule_id`` on ``event_id``: the same pair always gets the same id."""
    return hashlib.sha256(f"{event_id}\x1f{rule_id}".encode()).hexdigest()[:24]


def run_lease_key(connection: str, run_id: str) -> str:
    """The lease a worker holds while it executes the run."""
    return key(connection, "run-lease", run_id)


def queue_key(run: Run) -> str:
    """The ``mode: queued`` line of one rule for one record."""
    return key(run.connection, "rule-queue", run.rule_id, run.event.resource, run.event.record_id)


class StepTrace(BaseModel):
    """What one step did in the latest attempt that reached it."""

    id: str
    type: str
    status: Literal["pending", "started", "waiting", "done", "skipped", "failed", "errored", "cancelled"] = (
        "pending"
    )
    condition: bool | None = None
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    duration_ms: float | None = None
    error: str | None = None
    attempts: int = 0
    rule_version: str | None = None
    reused: bool = False


class EventSummary(BaseModel):
    """Enough of the event to recognise it in ``ppw runs list`` without its (privileged) record data."""

    type: str
    resource: str
    record_id: str
    revision: str
    origin: str = "practicepanther"
    #: changed field → whether its old value is known (names only: values are record data)
    changed: dict[str, bool] = Field(default_factory=dict)

    def changes_text(self) -> str:
        """``status, name (old ?)``: the changed fields, ``?`` where the old value is unknown
        (the first change after an upgrade from an older snapshot format)."""
        return ", ".join(name if known else f"{name} (old ?)" for name, known in self.changed.items())


class Run(BaseModel):
    id: str
    connection: str
    event_id: str
    event: EventSummary
    rule_id: str
    rule_version: str
    rule_snapshot: dict[str, Any] = Field(default_factory=dict)
    mode: str = "parallel"
    status: RunStatus = "queued"
    reason: str | None = None
    conditions: Any = None
    steps: list[StepTrace] = Field(default_factory=list)
    attempts: int = 0
    created_at: float = Field(default_factory=time.time)
    #: when the event was detected: the order of ``mode: queued`` runs for one record
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: float | None = None
    next_retry_at: float | None = None
    #: a ``waiting`` run: when its wait step wakes it (Unix time), and which step waits
    wake_at: float | None = None
    waiting_step: str | None = None
    error: str | None = None
    failed_step: str | None = None
    dead_at: float | None = None
    replays: int = 0
    dry_run: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def step(self, step_id: str) -> StepTrace | None:
        return next((s for s in self.steps if s.id == step_id), None)

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, UTC)


class RunNotFound(PpwError, LookupError):
    pass


class RunHistory:
    """Run records in the state store, indexed by creation time per connection."""

    def __init__(self, store: StateStore, retention: float) -> None:
        self.store = store
        self.retention = retention

    @staticmethod
    def key(connection: str, run_id: str) -> str:
        return key(connection, "run", run_id)

    @staticmethod
    def _index(connection: str) -> str:
        return key(connection, "runs")

    @staticmethod
    def _active(connection: str) -> str:
        return key(connection, "runs-active")

    def create(self, run: Run) -> bool:
        """Store a new run; False (and nothing written) when a run with this id already exists."""
        return run.id in self.create_many([run])

    def create_many(self, runs: Sequence[Run]) -> frozenset[str]:
        """Store the runs whose ids are new; returns those ids (a run that exists is left alone).

        Two round trips for a whole dispatch batch: the records, then their index entries.
        """
        if not runs:
            return frozenset()
        by_key = {self.key(r.connection, r.id): r for r in runs}
        made = self.store.set_many_if_absent(
            {k: r.model_dump_json() for k, r in by_key.items()}, self.retention
        )
        created = [by_key[k] for k in made]
        if created:
            with self.store.batch() as batch:
                for run in created:
                    batch.zadd(self._index(run.connection), {run.id: run.created_at})
                    if not run.terminal:
                        batch.zadd(self._active(run.connection), {run.id: run.created_at})
        return frozenset(r.id for r in created)

    def save(self, run: Run) -> None:
        """Write ``run`` back; dead runs are kept without expiry until replayed or discarded."""
        with self.store.batch() as batch:
            self.write(batch, run)

    def write(self, batch: WriteBatch, run: Run) -> None:
        """:meth:`save` into ``batch``, so the runner writes a run and its ledger entry together.

        Dead and waiting runs do not expire. A waiting run leaves the index of active runs, whose
        lost messages the sweeper re-sends: the timer index (:mod:`~worker.delivery.timers`) wakes
        it instead, when it is due.
        """
        ttl = None if run.status in ("dead", "waiting") else self.retention
        batch.set(self.key(run.connection, run.id), run.model_dump_json(), ttl=ttl)
        batch.zadd(self._index(run.connection), {run.id: run.created_at})
        if run.terminal or run.status == "waiting":
            batch.zrem(self._active(run.connection), run.id)
        else:
            batch.zadd(self._active(run.connection), {run.id: run.created_at})

    @staticmethod
    def parse(raw: str | None) -> Run | None:
        """The run stored as ``raw`` (read by the caller with other keys), None when gone."""
        return Run.model_validate_json(raw) if raw is not None else None

    def get(self, connection: str, run_id: str) -> Run:
        raw = self.store.get(self.key(connection, run_id))
        if raw is None:
            raise RunNotFound(f"no run {run_id!r} (unknown, or older than the retention period)")
        return Run.model_validate_json(raw)

    def find(self, connection: str, run_id: str) -> Run | None:
        try:
            return self.get(connection, run_id)
        except RunNotFound:
            return None

    def resolve(self, connection: str, prefix: str) -> Run:
        """A run by its full id or an unambiguous prefix (as ``ppw runs list`` shows them)."""
        run = self.find(connection, prefix)
        if run is not None:
            return run
        matches = [m for m, _ in self.store.zrange_by_score(self._index(connection)) if m.startswith(prefix)]
        if len(matches) == 1:
            return self.get(connection, matches[0])
        if len(matches) > 1:
            raise RunNotFound(f"run id prefix {prefix!r} is ambiguous ({len(matches)} runs); give more of it")
        raise RunNotFound(f"no run {prefix!r} (unknown, or older than the retention period)")

    def recent(
        self,
        connection: str,
        *,
        rule: str | None = None,
        status: str | None = None,
        since: float | None = None,
        limit: int = 50,
    ) -> list[Run]:
        """Newest first, filtered; prunes index entries whose records expired."""
        found: list[Run] = []
        for run in self._iter_newest(connection, since):
            if rule is not None and run.rule_id != rule:
                continue
            if status is not None and run.status != status:
                continue
            found.append(run)
            if len(found) >= limit:
                break
        return found

    def active(self, connection: str) -> list[str]:
        """Ids of runs not yet finished (queued, running, retrying), oldest first."""
        return [m for m, _ in self.store.zrange_by_score(self._active(connection))]

    def _iter_newest(self, connection: str, since: float | None) -> Iterator[Run]:
        self.prune(connection)
        index = self._index(connection)
        minimum = since if since is not None else float("-inf")
        members = self.store.zrange_by_score(index, minimum, descending=True)
        page = 200
        for start in range(0, len(members), page):
            chunk = [m for m, _ in members[start : start + page]]
            raws = self.store.get_many([self.key(connection, m) for m in chunk])
            gone = [m for m, raw in zip(chunk, raws, strict=True) if raw is None]
            if gone:
                self.store.zrem(index, *gone)
                self.store.zrem(self._active(connection), *gone)
            for raw in raws:
                if raw is not None:
                    yield Run.model_validate_json(raw)

    def prune(self, connection: str) -> int:
        """Drop index entries older than the retention period whose records are gone."""
        cutoff = time.time() - self.retention
        index = self._index(connection)
        old = [m for m, _ in self.store.zrange_by_score(index, maximum=cutoff)]
        if not old:
            return 0
        raws = self.store.get_many([self.key(connection, m) for m in old])
        gone = [m for m, raw in zip(old, raws, strict=True) if raw is None]
        if gone:
            self.store.zrem(index, *gone)
        return len(gone)

    def prune_active(self, connection: str) -> int:
        """Drop entries of the index of active runs older than the retention period whose records
        are gone (a run record lives at least the retention after its last write, so a younger
        entry's record cannot have expired). A waiting run is not in this index; a dead one leaves
        it when it dies."""
        cutoff = time.time() - self.retention
        index = self._active(connection)
        old = [m for m, _ in self.store.zrange_by_score(index, maximum=cutoff)]
        if not old:
            return 0
        raws = self.store.get_many([self.key(connection, m) for m in old])
        gone = [m for m, raw in zip(old, raws, strict=True) if raw is None]
        if gone:
            self.store.zrem(index, *gone)
        return len(gone)
