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

Lists never scan. Besides the time index of every run (``runs``) and the index of active runs,
each run is in sorted sets by rule, resource and record id (written once, when the run is
created), and, when it settles, by status (``succeeded``, ``skipped``, ``cancelled``, ``paused``,
``dead``, ``waiting``, and ``failed``: retrying or dead), all scored by creation time; a status
index is kept in the same write batch as the run, so a run leaves ``waiting`` or ``dead`` as it is
written in its next status. :meth:`RunHistory.page` reads the smallest index that answers the
filters, 50 at a time from a cursor, and checks the other filters on the runs it reads. The
indexes are forgotten with their runs (:meth:`RunHistory.prune`, which needs the run's rule,
resource and record after its record expired: the hash ``runs-attrs`` keeps them), and built once
for a store written before they existed (:meth:`RunHistory.ensure_indexes`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


#: The filter ``failed``: runs whose last attempt failed (retrying, or dead).
FAILED = "failed"
FAILED_STATUSES: frozenset[str] = frozenset({"retrying", "dead"})
#: What a list may filter by: every status and ``failed``.
FILTER_STATUSES: tuple[str, ...] = (*STATUSES, FAILED)
#: Statuses with an index of their own (a run settles in them); ``queued``, ``running`` and
#: ``retrying`` runs are listed from the index of active runs.
INDEXED_STATUSES: tuple[str, ...] = ("succeeded", "skipped", "cancelled", "paused", "dead", "waiting")
#: Statuses a run leaves again (a replay, a wake): every write removes the run from their indexes
#: unless it is in them.
LEAVABLE: tuple[str, ...] = ("dead", "waiting", FAILED)
#: Bumped when the set of indexes changes, so :meth:`RunHistory.ensure_indexes` builds them again.
INDEX_VERSION = "1"
#: Index entries one list request reads at most while checking filters the index does not answer.
SCAN_LIMIT = 2000


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


@dataclass(frozen=True)
class Position:
    """Where a list stands: a run's creation time and id (its score and member in every index).

    Cursors are positions rather than offsets, so the next page is an index range from here
    (never a skip over the pages before it) and a run created meanwhile does not shift the pages.
    """

    score: float
    member: str

    def text(self) -> str:
        return f"{self.score!r}_{self.member}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """The position ``text`` (from :meth:`text`); ValueError when it is not one."""
        score, sep, member = text.partition("_")
        if not sep or not member:
            raise ValueError(f"{text!r} is not a list position (expected <time>_<run id>)")
        value = float(score)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{text!r} is not a list position (its time is not a number)")
        return cls(value, member)

    def beyond(self, score: float, member: str, *, ascending: bool) -> bool:
        """True when ``(score, member)`` comes after this position in that direction."""
        if ascending:
            return score > self.score or (score == self.score and member > self.member)
        return score < self.score or (score == self.score and member < self.member)


@dataclass(frozen=True)
class RunQuery:
    """What a list asks for; every field None is every run. ``since``/``until`` bound the
    creation time (Unix seconds, both included)."""

    status: str | None = None
    rule: str | None = None
    resource: str | None = None
    record: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in FILTER_STATUSES:
            raise ValueError(f"unknown status {self.status!r}; expected one of {', '.join(FILTER_STATUSES)}")

    @property
    def low(self) -> float:
        return self.since if self.since is not None else float("-inf")

    @property
    def high(self) -> float:
        return self.until if self.until is not None else float("inf")

    def matches(self, run: Run) -> bool:
        if self.status == FAILED:
            if run.status not in FAILED_STATUSES:
                return False
        elif self.status is not None and run.status != self.status:
            return False
        return (
            (self.rule is None or run.rule_id == self.rule)
            and (self.resource is None or run.event.resource == self.resource)
            and (self.record is None or run.event.record_id == self.record)
            and self.low <= run.created_at <= self.high
        )


@dataclass(frozen=True)
class RunPage:
    """One page of a list. ``next`` and ``previous`` are the positions to ask for the pages
    after and before it, in the list's order (None at either end). ``searched`` counts the index
    entries read; ``limited`` says the request stopped after :data:`SCAN_LIMIT` of them (a rare
    combination of filters) and ``next`` continues from there."""

    runs: list[Run]
    next: Position | None
    previous: Position | None
    searched: int
    limited: bool = False


@dataclass(frozen=True)
class _Found:
    runs: list[Run]
    positions: list[Position]
    last: Position | None
    more: bool
    searched: int
    limited: bool


class RunHistory:
    """Run records in the state store, indexed by creation time per connection."""

    def __init__(self, store: StateStore, retention: float) -> None:
        self.store = store
        self.retention = retention
        #: connections whose indexes this process knows are built
        self._indexed: set[str] = set()

    @staticmethod
    def key(connection: str, run_id: str) -> str:
        return key(connection, "run", run_id)

    @staticmethod
    def _index(connection: str) -> str:
        return key(connection, "runs")

    @staticmethod
    def _active(connection: str) -> str:
        return key(connection, "runs-active")

    @staticmethod
    def by(connection: str, kind: str, value: str) -> str:
        """The index of runs by ``kind`` (``status``, ``rule``, ``resource``, ``record``)."""
        return key(connection, "runs-by", kind, value)

    @staticmethod
    def _attrs(connection: str) -> str:
        """run id → rule, resource and record id: what :meth:`prune` needs once the run is gone."""
        return key(connection, "runs-attrs")

    @staticmethod
    def _marker(connection: str) -> str:
        return key(connection, "indexed", "runs")

    def _index_run(self, batch: WriteBatch, run: Run) -> None:
        """The indexes a run is in for life (by rule, resource, record) and its status index."""
        conn, score = run.connection, run.created_at
        batch.zadd(self.by(conn, "rule", run.rule_id), {run.id: score})
        batch.zadd(self.by(conn, "resource", run.event.resource), {run.id: score})
        batch.zadd(self.by(conn, "record", run.event.record_id), {run.id: score})
        batch.hset(
            self._attrs(conn), {run.id: "\x1f".join((run.rule_id, run.event.resource, run.event.record_id))}
        )
        self._index_status(batch, run, leaving=False)

    def _index_status(self, batch: WriteBatch, run: Run, *, leaving: bool = True) -> None:
        """``leaving``: the run may have been in another status index (any write but its first)."""
        conn, score = run.connection, run.created_at
        if run.status in INDEXED_STATUSES:
            batch.zadd(self.by(conn, "status", run.status), {run.id: score})
        if run.status in FAILED_STATUSES:
            batch.zadd(self.by(conn, "status", FAILED), {run.id: score})
        for status in LEAVABLE if leaving else ():
            if status != run.status and not (status == FAILED and run.status in FAILED_STATUSES):
                batch.zrem(self.by(conn, "status", status), run.id)

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
                    self._index_run(batch, run)
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
        self._index_status(batch, run)

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
        """Newest first, filtered (``ppw runs list``): every match up to ``limit``, however many
        index entries that reads."""
        query = RunQuery(status=status, rule=rule, since=since)
        return self.page(connection, query, size=limit, scan_limit=None).runs

    def active(self, connection: str) -> list[str]:
        """Ids of runs not yet finished (queued, running, retrying), oldest first."""
        return [m for m, _ in self.store.zrange_by_score(self._active(connection))]

    # lists -------------------------------------------------------------------------------------

    def page(
        self,
        connection: str,
        query: RunQuery | None = None,
        *,
        after: Position | None = None,
        before: Position | None = None,
        size: int = 50,
        scan_limit: int | None = SCAN_LIMIT,
    ) -> RunPage:
        """One page of runs matching ``query``, newest first: the newest ``size``, or the ``size``
        after (older than) ``after``, or those just before (newer than) ``before``.

        Reads the smallest index that answers a filter (counted by the backend within the time
        bounds), then the runs it names, checking every filter on them.
        """
        query = query or RunQuery()
        self.ensure_indexes(connection)
        index = self._driver(connection, query)
        return self.walk(
            connection, index, query, after=after, before=before, size=size, scan_limit=scan_limit
        )

    def walk(
        self,
        connection: str,
        index: str,
        query: RunQuery,
        *,
        after: Position | None = None,
        before: Position | None = None,
        size: int = 50,
        scan_limit: int | None = SCAN_LIMIT,
        ascending: bool = False,
        belongs: Callable[[Run], bool] | None = None,
    ) -> RunPage:
        """A page of the runs ``index`` names that match ``query``, in the index's order
        (``ascending`` by score, or newest first): ``after``/``before`` a position in that order.

        A run whose record is gone leaves every index; one that no longer ``belongs`` in ``index``
        (a status it has left; by default what :meth:`page`'s indexes mean) leaves ``index``.
        """
        fits = belongs or (lambda run: self._belongs(connection, index, run))
        if before is not None:
            found = self._walk(connection, index, query, before, not ascending, size, scan_limit, fits)
            if not found.more and not found.limited:  # back at the start: the first page, full
                return self.walk(
                    connection,
                    index,
                    query,
                    size=size,
                    scan_limit=scan_limit,
                    ascending=ascending,
                    belongs=belongs,
                )
            positions = found.positions[::-1]
            previous = found.last if found.limited else positions[0]
            return RunPage(
                found.runs[::-1],
                positions[-1] if positions else before,
                previous,
                found.searched,
                found.limited,
            )
        found = self._walk(connection, index, query, after, ascending, size, scan_limit, fits)
        following = found.last if found.limited else (found.positions[-1] if found.more else None)
        previous = (found.positions[0] if found.runs else after) if after is not None else None
        return RunPage(found.runs, following, previous, found.searched, found.limited)

    def _candidates(self, connection: str, query: RunQuery) -> list[str]:
        """The indexes that hold every run matching ``query`` (and maybe others)."""
        found = []
        if query.status in (*INDEXED_STATUSES, FAILED):
            found.append(self.by(connection, "status", query.status))
        elif query.status is not None:  # queued, running, retrying
            found.append(self._active(connection))
        if query.rule is not None:
            found.append(self.by(connection, "rule", query.rule))
        if query.resource is not None:
            found.append(self.by(connection, "resource", query.resource))
        if query.record is not None:
            found.append(self.by(connection, "record", query.record))
        return found

    def _driver(self, connection: str, query: RunQuery) -> str:
        """The candidate index with the fewest entries in the time bounds (the time index alone
        when nothing else narrows the list)."""
        candidates = self._candidates(connection, query)
        if not candidates:
            return self._index(connection)
        if len(candidates) == 1:
            return candidates[0]
        return min(candidates, key=lambda k: self.store.zcount(k, query.low, query.high))

    def _walk(
        self,
        connection: str,
        index: str,
        query: RunQuery,
        start: Position | None,
        ascending: bool,
        size: int,
        limit: int | None,
        belongs: Callable[[Run], bool],
    ) -> _Found:
        """Up to ``size`` matching runs beyond ``start`` (and whether there are more), reading
        ``index`` in chunks; stops after ``limit`` entries read."""
        runs: list[Run] = []
        positions: list[Position] = []
        bound, searched, exhausted = start, 0, False
        chunk = size + 1 if self._candidates(connection, query) in ([], [index]) else max(4 * (size + 1), 200)
        while len(runs) <= size:
            if limit is not None and searched >= limit:
                break
            want = chunk if limit is None else min(chunk, limit - searched)
            rows = self._slice(index, bound, ascending=ascending, count=want, low=query.low, high=query.high)
            if not rows:
                exhausted = True
                break
            searched += len(rows)
            bound = Position(rows[-1][1], rows[-1][0])
            members = [m for m, _ in rows]
            raws = self.store.get_many([self.key(connection, m) for m in members])
            gone, stale = [], []
            for (member, score), raw in zip(rows, raws, strict=True):
                run = self.parse(raw)
                if run is None:
                    gone.append(member)
                elif query.matches(run):
                    if len(runs) <= size:
                        runs.append(run)
                        positions.append(Position(score, member))
                elif not belongs(run):
                    stale.append(member)
            if gone:
                self.forget(connection, gone)
            if stale:
                self.store.zrem(index, *stale)
            if len(rows) < want:
                exhausted = True
                break
        more = len(runs) > size
        limited = not more and not exhausted and limit is not None and searched >= limit
        return _Found(runs[:size], positions[:size], bound, more, searched, limited)

    def _belongs(self, connection: str, index: str, run: Run) -> bool:
        """Whether ``run`` belongs in ``index`` as it is now (a status index it has left: no)."""
        if index == self._active(connection):
            return not run.terminal and run.status != "waiting"
        for status in (*INDEXED_STATUSES, FAILED):
            if index == self.by(connection, "status", status):
                return run.status == status or (status == FAILED and run.status in FAILED_STATUSES)
        return True  # the time index, and those by rule, resource and record: for life

    def _slice(
        self, index: str, bound: Position | None, *, ascending: bool, count: int, low: float, high: float
    ) -> list[tuple[str, float]]:
        """``count`` entries of ``index`` strictly beyond ``bound`` within ``low..high``; entries
        tied with the bound's score are read past (a larger read when many share it)."""
        extra = 8
        while True:
            if bound is None:
                lo, hi = low, high
            elif ascending:
                lo, hi = max(low, bound.score), high
            else:
                lo, hi = low, min(high, bound.score)
            rows = self.store.zrange_by_score(index, lo, hi, limit=count + extra, descending=not ascending)
            full = len(rows) == count + extra
            if bound is not None:
                rows = [(m, s) for m, s in rows if bound.beyond(s, m, ascending=ascending)]
            if len(rows) >= count or not full:
                return rows[:count]
            extra *= 8

    def rule_activity(
        self, connection: str, rules: Sequence[str], *, since: float
    ) -> dict[str, tuple[float | None, int]]:
        """Per rule: when it last fired (its newest run's creation time, None when it has no run)
        and how many runs it started since ``since``; two index reads per rule."""
        self.ensure_indexes(connection)
        found: dict[str, tuple[float | None, int]] = {}
        for rule in rules:
            index = self.by(connection, "rule", rule)
            newest = self.store.zrange_by_score(index, limit=1, descending=True)
            found[rule] = (newest[0][1] if newest else None, self.store.zcount(index, since))
        return found

    # upkeep ------------------------------------------------------------------------------------

    def ensure_indexes(self, connection: str) -> int:
        """Build the indexes by rule, resource, record and status for the runs of a store written
        before they existed (once: a marker records it); returns the runs indexed now.

        Idempotent and safe beside a running worker: it only adds entries, and a run it lists
        under a status the run has just left is dropped from that index when a list reads it.
        """
        if connection in self._indexed:
            return 0
        marker = self._marker(connection)
        if self.store.get(marker) == INDEX_VERSION:
            self._indexed.add(connection)
            return 0
        indexed = 0
        bound: Position | None = None
        index = self._index(connection)
        while True:
            rows = self._slice(index, bound, ascending=True, count=500, low=float("-inf"), high=float("inf"))
            if not rows:
                break
            bound = Position(rows[-1][1], rows[-1][0])
            raws = self.store.get_many([self.key(connection, m) for m, _ in rows])
            runs = [run for run in map(self.parse, raws) if run is not None]
            with self.store.batch() as batch:
                for run in runs:
                    self._index_run(batch, run)
            indexed += len(runs)
        self.store.set(marker, INDEX_VERSION)
        self._indexed.add(connection)
        return indexed

    def forget(self, connection: str, run_ids: Sequence[str]) -> None:
        """Drop runs whose records are gone from every index they were in."""
        if not run_ids:
            return
        attrs = self.store.hmget(self._attrs(connection), run_ids)
        with self.store.batch() as batch:
            batch.zrem(self._index(connection), *run_ids)
            batch.zrem(self._active(connection), *run_ids)
            for status in (*INDEXED_STATUSES, FAILED):
                batch.zrem(self.by(connection, "status", status), *run_ids)
            for run_id, attr in zip(run_ids, attrs, strict=True):
                if attr is None:
                    continue
                rule, resource, record = attr.split("\x1f")
                batch.zrem(self.by(connection, "rule", rule), run_id)
                batch.zrem(self.by(connection, "resource", resource), run_id)
                batch.zrem(self.by(connection, "record", record), run_id)
            batch.hdel(self._attrs(connection), *run_ids)

    def prune(self, connection: str) -> int:
        """Drop the entries, in every index, of runs older than the retention period whose records
        are gone."""
        cutoff = time.time() - self.retention
        index = self._index(connection)
        old = [m for m, _ in self.store.zrange_by_score(index, maximum=cutoff)]
        if not old:
            return 0
        gone: list[str] = []
        for start in range(0, len(old), 1000):
            chunk = old[start : start + 1000]
            raws = self.store.get_many([self.key(connection, m) for m in chunk])
            gone += [m for m, raw in zip(chunk, raws, strict=True) if raw is None]
        for start in range(0, len(gone), 1000):
            self.forget(connection, gone[start : start + 1000])
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
