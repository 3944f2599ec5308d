"""Deleted records: every id PracticePanther lists, compared with the snapshots ppw tracks.

PracticePanther has no feed of deletions and a deleted record simply stops appearing, so each
pollable resource is *reconciled* on a cadence of its own (``PPW_RECONCILE_INTERVAL``, daily, and
``PPW_RECONCILE_INTERVALS__<RESOURCE>``). Nothing is deleted on doubt; a reconcile applies these
rules, in this order:

1. one reconcile per (connection, resource) at a time, under a lease kept alive like the poll
   lock, and none before the resource is primed (nothing is tracked yet);
2. the ids are listed the cheapest way the API allows: pages of ``$select=id``. A service that
   refuses ``$select`` (400) is listed in whole pages instead, and that is remembered for the
   resource, so later reconciles do not ask again;
3. tracked ids missing from the listing are *candidates*. The listing pages by offset over a live
   table, so a record can slip between two pages when others are deleted meanwhile: a candidate is
   a deletion only once its own GET answers 404 (a record that answers stays tracked);
4. more candidates than ``PPW_FLOOD_LIMIT`` (an outage answering empty arrays, a permission change,
   a mass deletion) are not all fetched. A sample is: if none of it is gone, the listing is not
   believed (``suspect``: nothing fires, an ALERT is logged); if all of it is gone, the deleted
   events are held like a flood for an operator (``ppw held``); a mixed sample is ``suspect`` too;
5. every candidate is confirmed before anything is written, so a reconcile that fails part-way (a
   GET that keeps failing, the lease lost) removes and fires nothing;
6. a deleted event carries the record as last seen (``record`` and ``previous``, restored from the
   snapshot), and its id comes from (connection, resource, record, last revision), so a reconcile
   re-run after a crash makes the same event and dispatch drops the repeat;
7. events are emitted a chunk at a time, each chunk's snapshots removed right after it: a crash
   re-emits at most one chunk.

Keys (under ``ppw:<connection>:``): ``reconcile:<resource>`` (JSON :class:`ReconcileStatus`),
``lock:reconcile:<resource>`` and ``reconcileq:<resource>`` (the scheduler's "queued" marker).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from worker.errors import PpwError
from worker.events import Event
from worker.observability import metrics
from worker.options import options_from, setting
from worker.polling import cursors, held
from worker.polling.snapshots import Snapshot, Snapshotter, SnapshotUnreadable, snapshotter_for
from worker.practicepanther import resources
from worker.practicepanther.errors import InvalidRequest, NotFound
from worker.practicepanther.resources import Resource
from worker.settings import Settings
from worker.state.base import StateError, StateStore, key
from worker.state.locks import Lease, try_lock

log = logging.getLogger(__name__)

Emit = Callable[[list[Event]], None]
ReconcileOutcome = Literal["ok", "held", "suspect", "busy", "unprimed"]

#: Candidates fetched to judge a listing that lacks more records than the flood limit.
SAMPLE = 5
#: Deleted events emitted (and their snapshots removed) together.
EMIT_CHUNK = 50


class ReconcileAborted(PpwError, RuntimeError):
    """The reconcile lost its lease or ran out of time; nothing was removed or fired."""


class ReconcileSource(Protocol):
    """What a reconcile needs from the PracticePanther client."""

    def list_page(
        self,
        resource: str,
        *,
        orderby: str | list[str] | None = None,
        top: int | None = None,
        skip: int | None = None,
        select: list[str] | None = None,
    ) -> list[dict[str, Any]]: ...

    def get(self, resource: str, record_id: str) -> dict[str, Any]: ...


def lock_key(connection: str, resource: str) -> str:
    return key(connection, "lock", "reconcile", resource)


def pending_key(connection: str, resource: str) -> str:
    """Set by the scheduler when it enqueues a reconcile, cleared when the reconcile starts."""
    return key(connection, "reconcileq", resource)


@dataclass(frozen=True)
class ReconcileStatus:
    """The last reconcile of one resource, for ``ppw status``, the scheduler's cadence and metrics.

    ``select_refused`` is remembered across reconciles: the service answered ``$select`` with 400.
    """

    at: str
    result: str  # ok | held | suspect | error
    tracked: int = 0
    listed: int = 0
    missing: int = 0
    deleted: int = 0
    requests: int = 0
    duration: float = 0.0
    select_refused: bool = False
    error: str | None = None
    last_success: str | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> ReconcileStatus:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def load_status(store: StateStore, connection: str, resource: str) -> ReconcileStatus | None:
    raw = store.get(cursors.reconcile_status_key(connection, resource))
    return ReconcileStatus.loads(raw) if raw else None


def _intervals(values: Mapping[str, float]) -> dict[str, float]:
    return {resources.get(name).name: float(seconds) for name, seconds in values.items()}


@dataclass(frozen=True)
class ReconcileOptions:
    """The settings a reconcile reads (``PPW_RECONCILE_*``, the flood limit and poll lease)."""

    interval: float = setting("reconcile_interval")
    intervals: Mapping[str, float] = setting("reconcile_intervals", _intervals)
    page_size: int = setting("reconcile_page_size")
    flood_limit: int = setting("flood_limit")
    lease: float = setting("poll_lease")
    timeout: float = setting("poll_timeout")
    use_updated_since: frozenset[str] = setting(
        "poll_use_updated_since", lambda names: frozenset(resources.get(n).name for n in names)
    )
    emit_chunk: int = EMIT_CHUNK

    @classmethod
    def from_settings(cls, settings: Settings) -> ReconcileOptions:
        return options_from(cls, settings)

    def interval_for(self, resource: str) -> float:
        """Seconds between reconciles of ``resource``; 0 means never."""
        return self.intervals.get(resources.get(resource).name, self.interval)


@dataclass
class ReconcileResult:
    """What a reconcile found; ``events`` were emitted (or held, or would be in a dry run)."""

    resource: str
    outcome: ReconcileOutcome
    events: list[Event] = field(default_factory=list)
    tracked: int = 0
    listed: int = 0
    missing: int = 0
    requests: int = 0
    select_refused: bool = False
    held: held.HeldBatch | None = None
    duration: float = 0.0
    dry_run: bool = False


class Reconciler:
    """Reconciles the resources of one connection (see the module's rules).

    Parameters
    ----------
    source:
        The PracticePanther client (``list_page`` with ``select``, and ``get``).
    store:
        State: snapshots, cursors, held batches, the reconcile status and lease.
    connection:
        Connection id; every key and event id includes it.
    options:
        Page size, flood limit, lease (:meth:`ReconcileOptions.from_settings`).
    """

    def __init__(
        self,
        source: ReconcileSource,
        store: StateStore,
        *,
        connection: str = "default",
        options: ReconcileOptions | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.connection = connection
        self.options = options or ReconcileOptions()

    def reconcile(self, resource: str, emit: Emit | None = None, *, dry_run: bool = False) -> ReconcileResult:
        """Reconcile ``resource`` once; ``emit`` receives the deleted events (not in a dry run).

        A dry run lists and confirms but writes nothing and takes no lease. Raises on failure,
        after recording it for ``ppw status``; nothing is removed then.
        """
        res = resources.get(resource)
        if not res.pollable:
            raise ValueError(f"{res.name} is not polled, so nothing of it is tracked to reconcile")
        if emit is None and not dry_run:
            raise ValueError("a reconcile needs an emit function (or dry_run=True)")
        started = time.monotonic()
        if cursors.load_cursor(self.store, self.connection, res.name) is None:
            return ReconcileResult(res.name, "unprimed", dry_run=dry_run)
        run = _Run(self, res, emit, dry_run=dry_run, started=started)
        if dry_run:
            return run.execute()
        until = started + self.options.timeout
        with try_lock(
            self.store, lock_key(self.connection, res.name), self.options.lease, until=until
        ) as lease:
            if lease is None:
                log.info("%s: a reconcile is already in flight; skipped", res.name)
                return ReconcileResult(res.name, "busy")
            run.lease = lease
            try:
                self.store.delete(pending_key(self.connection, res.name))
                result = run.execute()
            except Exception as exc:
                self._record(res.name, None, started, error=exc)
                raise
        self._record(res.name, result, started)
        return result

    def _record(
        self, resource: str, result: ReconcileResult | None, started: float, *, error: Exception | None = None
    ) -> None:
        now = datetime.now(UTC)
        previous = None
        with suppress(StateError):
            previous = load_status(self.store, self.connection, resource)
        believed = result is not None and result.outcome in ("ok", "held")
        status = ReconcileStatus(
            at=now.isoformat(),
            result=result.outcome if result is not None else "error",
            tracked=result.tracked if result else 0,
            listed=result.listed if result else 0,
            missing=result.missing if result else 0,
            deleted=len(result.events) if result else 0,
            requests=result.requests if result else 0,
            duration=round(time.monotonic() - started, 3),
            select_refused=(result.select_refused if result else False)
            or bool(previous and previous.select_refused),
            error=f"{type(error).__name__}: {error}"[:500] if error is not None else None,
            last_success=now.isoformat() if believed else previous.last_success if previous else None,
        )
        metrics.RECONCILES.labels(resource, status.result).inc()
        if believed:
            metrics.LAST_RECONCILE_SUCCESS.labels(resource).set(now.timestamp())
            if result is not None and result.outcome == "ok":
                for _event in result.events:
                    metrics.EVENTS.labels("deleted", resource).inc()
        if error is not None:
            log.warning("%s: reconcile failed, nothing removed: %s", resource, error)
        with suppress(StateError):
            self.store.set(cursors.reconcile_status_key(self.connection, resource), status.dumps())


class _Run:
    """One reconcile in progress (kept off :class:`Reconciler`, which threads share)."""

    def __init__(
        self, reconciler: Reconciler, resource: Resource, emit: Emit | None, *, dry_run: bool, started: float
    ) -> None:
        self.source = reconciler.source
        self.store = reconciler.store
        self.connection = reconciler.connection
        self.options = reconciler.options
        self.resource = resource
        self.emit = emit
        self.dry_run = dry_run
        self.started = started
        self.now = datetime.now(UTC)
        self.lease: Lease | None = None
        self.requests = 0
        previous = load_status(self.store, self.connection, resource.name)
        self.select_refused = bool(previous and previous.select_refused)

    def execute(self) -> ReconcileResult:
        name = self.resource.name
        tracked = self.store.hkeys(cursors.snapshot_key(self.connection, name))
        listed = set(self._listed_ids())
        candidates = sorted(set(tracked) - listed)
        result = ReconcileResult(
            resource=name,
            outcome="ok",
            tracked=len(tracked),
            listed=len(listed),
            missing=len(candidates),
            dry_run=self.dry_run,
        )
        if len(candidates) > self.options.flood_limit:
            self._judge_flood(result, candidates)
        else:
            gone = [rid for rid in candidates if self._is_gone(rid)]
            result.events = self._events(gone)
            if not self.dry_run:
                self._emit_and_forget(result.events)
        result.requests = self.requests
        result.select_refused = self.select_refused
        result.duration = time.monotonic() - self.started
        if result.events and result.outcome == "ok":
            log.info("%s: %d deleted record(s) found by reconcile", name, len(result.events))
        return result

    # listing ---------------------------------------------------------------------------------
    def _listed_ids(self) -> Iterator[str]:
        """Every id the list endpoint answers, page by page (see rule 2).

        A server that caps pages below the size asked for must not end the listing early: a
        short page ends it only when an earlier page was longer, and a short first page is
        confirmed by asking for the next one (as :meth:`PracticePantherClient.list` does).
        """
        skip = longest = 0
        while True:
            page = self._page(skip)
            for record in page:
                if record.get("id") not in (None, ""):
                    yield str(record["id"])
            if not page or len(page) < min(self.options.page_size, longest):
                return
            longest = max(longest, len(page))
            skip += len(page)

    def _page(self, skip: int) -> list[dict[str, Any]]:
        orders = self.resource.has_timestamps and self.resource.name not in self.options.use_updated_since
        request: dict[str, Any] = {"top": self.options.page_size, "skip": skip or None}
        if orders:  # the order the poller relies on, made stable under edits
            request["orderby"] = "id"
        if not self.select_refused:
            self._before_request()
            try:
                return self.source.list_page(self.resource.name, select=["id"], **request)
            except InvalidRequest as exc:
                log.info(
                    "%s: PracticePanther refused $select (%s); listing whole records from now on",
                    self.resource.name,
                    exc,
                )
                self.select_refused = True
        self._before_request()
        return self.source.list_page(self.resource.name, **request)

    # confirming -----------------------------------------------------------------------------
    def _is_gone(self, record_id: str) -> bool:
        """Rule 3: a 404 on the record's own GET; any other failure ends the reconcile."""
        self._before_request()
        try:
            self.source.get(self.resource.name, record_id)
        except NotFound:
            return True
        return False

    def _judge_flood(self, result: ReconcileResult, candidates: Sequence[str]) -> None:
        """Rule 4: believe a listing that lacks this many records only if a sample is gone too."""
        sample = random.Random(self.connection).sample(list(candidates), min(SAMPLE, len(candidates)))
        gone = [rid for rid in sample if self._is_gone(rid)]
        name = self.resource.name
        if len(gone) < len(sample):
            result.outcome = "suspect"
            log.warning(
                "ALERT %s: the listing lacks %d of %d tracked records but %d of %d sampled still "
                "exist; nothing is removed or fired (an outage or a permission change?)",
                name,
                len(candidates),
                result.tracked,
                len(sample) - len(gone),
                len(sample),
            )
            return
        result.outcome = "held"
        result.events = self._events(candidates)
        if not self.dry_run:
            result.held = self._hold(result.events)

    # committing -----------------------------------------------------------------------------
    def _events(self, record_ids: Sequence[str]) -> list[Event]:
        snapshots = cursors.load_snapshots(self.store, self.connection, self.resource.name, record_ids)
        snapper = snapshotter_for(self.store, self.connection, self.resource, persist=False)
        return [
            self._event(rid, snapshot, snapper)
            for rid, snapshot in snapshots.items()
            if snapshot is not None  # removed meanwhile (reset, or a reconcile just before)
        ]

    def _event(self, record_id: str, snapshot: Snapshot, snapper: Snapshotter) -> Event:
        try:
            record = snapper.restore(snapshot, record_id)
        except SnapshotUnreadable as exc:
            log.error("%s %s: %s; its deleted event carries only the id", self.resource.name, record_id, exc)
            record = None
        last = record if record is not None else {"id": record_id}
        return Event.build(
            type="deleted",
            resource=self.resource.name,
            record_id=record_id,
            revision=snapshot.revision or snapshot.content or "",
            connection=self.connection,
            record=last,
            previous=last,
            detected_at=self.now,
        )

    def _emit_and_forget(self, events: list[Event]) -> None:
        assert self.emit is not None
        snapshots = cursors.snapshot_key(self.connection, self.resource.name)
        chunk_size = max(1, self.options.emit_chunk)
        for start in range(0, len(events), chunk_size):
            chunk = events[start : start + chunk_size]
            self._before_write()
            self.emit(chunk)
            self.store.hdel(snapshots, *(e.record_id for e in chunk))

    def _hold(self, events: list[Event]) -> held.HeldBatch:
        self._before_write()
        with self.store.batch() as batch:
            batch_held = held.hold(
                batch,
                self.connection,
                self.resource.name,
                events,
                limit=self.options.flood_limit,
                now=self.now,
                kind="deleted",
            )
            if events:
                batch.hdel(
                    cursors.snapshot_key(self.connection, self.resource.name), *(e.record_id for e in events)
                )
        log.warning(
            "ALERT %s: %s; batch %s is held: nothing from it fires until `ppw held release %s`",
            self.resource.name,
            batch_held.reason,
            batch_held.id,
            batch_held.id,
        )
        metrics.HELD_BATCHES.labels(self.resource.name).set(
            len(held.list_held(self.store, self.connection, self.resource.name))
        )
        return batch_held

    def _before_request(self) -> None:
        self._check()
        self.requests += 1

    def _before_write(self) -> None:
        """Renew the lease (one round trip), so the write is made while it is ours."""
        self._check()
        if self.lease is not None and not self.lease.renew():
            self._check()

    def _check(self) -> None:
        """Stop if the lease keeper lost the lease or the time is up (rule 5)."""
        if self.lease is None:
            return
        if not self.lease.held or time.monotonic() - self.started > self.options.timeout:
            raise ReconcileAborted(
                f"{self.resource.name}: the reconcile lost its lease or outlived PPW_POLL_TIMEOUT="
                f"{self.options.timeout:g}s; nothing was removed"
            )
