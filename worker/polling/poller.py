"""One poll of one resource for one connection: read changes, emit events, then advance.

The order of work is what keeps the two promises "never lose a change" and "never fire one twice":

1. take the resource's poll lock (one poll in flight per connection and resource). It is a short
   lease (``PPW_POLL_LEASE``, 30 s) that the process's lease keeper renews while the poll runs, so
   a process that dies mid-poll blocks the next poll for that long at most; a live poll that
   outlasts ``PPW_POLL_TIMEOUT`` is no longer renewed and stops before its next request or write;
2. read every record changed since ``cursor - overlap`` (:mod:`~worker.polling.paging`);
3. compare them with their snapshots (:mod:`~worker.polling.detector`), one event per record;
4. emit the events, a chunk at a time, storing each chunk's snapshots right after it was emitted
   (so a crash re-emits at most one chunk, and dispatch drops those by event id);
5. in one atomic batch store the remaining snapshots and move the cursor to the greatest record
   ``updated_at`` read, never to the local clock.

Anything that fails before step 5 leaves the cursor where it was; the next poll reads the same
changes again and the snapshots stored in step 4 keep already-emitted ones from firing twice.

The first poll of a resource *primes* it: every record is snapshotted and the cursor set, with no
event, so connecting an old account does not replay its history (unless ``backfill_since`` says
so). A poll finding more events than ``flood_limit`` holds them for an operator
(:mod:`~worker.polling.held`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from worker.errors import PpwError
from worker.events import Event
from worker.observability import metrics
from worker.options import options_from, setting
from worker.polling import cursors, held
from worker.polling.cursors import Cursor, PollStatus
from worker.polling.detector import Detection, Detector
from worker.polling.dictionaries import TRAIN_SAMPLES
from worker.polling.own_writes import mark_origins
from worker.polling.paging import PageReader, PageSource, Query, Record
from worker.polling.snapshots import Snapshot, content_hash, parse_revision, snapshotter_for
from worker.practicepanther import resources
from worker.practicepanther.resources import Resource
from worker.settings import Settings
from worker.state.base import StateError, StateStore, key
from worker.state.locks import Lease, try_lock

log = logging.getLogger(__name__)

Emit = Callable[[list[Event]], None]
Progress = Callable[[int], None]
PollOutcome = Literal["ok", "primed", "held", "busy"]

#: Events emitted (and their snapshots stored) together; a crash re-emits at most this many.
EMIT_CHUNK = 50
#: Priming stores snapshots after every this many records.
PRIME_CHUNK = 1000


class PollAborted(PpwError, RuntimeError):
    """This poll lost its lock (it outlived ``poll_timeout``, or the lease lapsed while this process
    stalled); nothing more was committed."""


def poll_lock_key(connection: str, resource: str) -> str:
    return key(connection, "lock", "poll", resource)


def poll_pending_key(connection: str, resource: str) -> str:
    """Set by the scheduler when it enqueues a poll, cleared when the poll starts."""
    return key(connection, "pollq", resource)


@dataclass
class PollResult:
    """What a poll did. ``events`` were emitted (or held, or would be emitted in a dry run)."""

    resource: str
    outcome: PollOutcome
    events: list[Event] = field(default_factory=list)
    records: int = 0
    requests: int = 0
    rereads: int = 0
    query: str = ""
    cursor: Cursor | None = None
    held: held.HeldBatch | None = None
    duration: float = 0.0
    dry_run: bool = False


@dataclass(frozen=True)
class PollOptions:
    """The settings a poll reads (see ``PPW_POLL_*`` in ``.env.example``)."""

    page_size: int = setting("poll_page_size")
    overlap: float = setting("poll_overlap")
    sweep_interval: float = setting("poll_sweep_interval")
    timeout: float = setting("poll_timeout")
    lease: float = setting("poll_lease")
    flood_limit: int = setting("flood_limit")
    # lambdas: the conversions are defined below this class
    use_updated_since: frozenset[str] = setting(
        "poll_use_updated_since", lambda names: frozenset(_names(names))
    )
    backfill_since: Mapping[str, datetime] = setting("backfill_since", lambda since: parse_backfill(since))
    emit_chunk: int = EMIT_CHUNK

    @classmethod
    def from_settings(cls, settings: Settings) -> PollOptions:
        return options_from(cls, settings)


def _names(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        if value.strip() in ("*", "all"):
            out.extend(r.name for r in resources.pollable())
        else:
            out.append(resources.get(value.strip()).name)
    return out


def parse_backfill(values: Mapping[str, str]) -> dict[str, datetime]:
    """``{"matters": "2026-01-01"}`` from ``PPW_BACKFILL_SINCE__MATTERS=2026-01-01`` as UTC datetimes."""
    out: dict[str, datetime] = {}
    for name, text in values.items():
        when = parse_revision(str(text))
        if when is None:
            raise ValueError(f"PPW_BACKFILL_SINCE__{name.upper()}: not a date or timestamp: {text!r}")
        out[resources.get(name).name] = when
    return out


class Poller:
    """Polls the resources of one connection.

    Parameters
    ----------
    source:
        The PracticePanther client (anything with ``list_page``).
    store:
        State: cursors, snapshots, locks, held batches.
    connection:
        Connection id; every key and event id includes it.
    options:
        Page size, overlap, flood limit ... (:meth:`PollOptions.from_settings`).
    """

    def __init__(
        self,
        source: PageSource,
        store: StateStore,
        *,
        connection: str = "default",
        options: PollOptions | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.connection = connection
        self.options = options or PollOptions()

    def poll(
        self,
        resource: str,
        emit: Emit | None = None,
        *,
        dry_run: bool = False,
        on_progress: Progress | None = None,
    ) -> PollResult:
        """Poll ``resource`` once; ``emit`` receives the events (not called in a dry run).

        A dry run reads and compares but writes nothing and takes no lock. Returns ``busy`` when
        another poll of the same resource is in flight. Raises on failure (after recording it for
        ``ppw status``); the cursor is then unchanged.
        """
        res = resources.get(resource)
        if not res.pollable:
            raise ValueError(f"{res.name} cannot be polled (its list endpoint has no updated_since)")
        if emit is None and not dry_run:
            raise ValueError("a poll needs an emit function (or dry_run=True)")
        started = time.monotonic()
        run = _Run(self, res, emit, dry_run=dry_run, on_progress=on_progress, started=started)
        if dry_run:
            return run.execute()
        until = started + self.options.timeout
        with try_lock(
            self.store, poll_lock_key(self.connection, res.name), self.options.lease, until=until
        ) as lease:
            if lease is None:
                log.info("%s: a poll is already in flight; skipped", res.name)
                return PollResult(res.name, "busy")
            run.lease = lease
            try:
                self.store.delete(poll_pending_key(self.connection, res.name))
                result = run.execute()
            except Exception as exc:
                self._record_failure(res, exc, started)
                raise
        self._record_success(result)
        return result

    # status and metrics -------------------------------------------------------------------
    def _record_success(self, result: PollResult) -> None:
        now = datetime.now(UTC)
        status = PollStatus(
            at=now.isoformat(),
            result=result.outcome,
            events=len(result.events),
            records=result.records,
            requests=result.requests,
            duration=round(result.duration, 3),
            last_success=now.isoformat(),
        )
        with suppress(StateError):
            cursors.write_status(self.store, self.connection, result.resource, status)
        metrics.POLLS.labels(result.resource, result.outcome).inc()
        metrics.LAST_POLL_SUCCESS.labels(result.resource).set(now.timestamp())
        for event in result.events:
            if result.outcome != "held":
                metrics.EVENTS.labels(event.type, event.resource).inc()
        if result.cursor is not None and result.cursor.position is not None:
            metrics.CURSOR_LAG.labels(result.resource).set((now - result.cursor.position).total_seconds())

    def _record_failure(self, res: Resource, exc: Exception, started: float) -> None:
        metrics.POLLS.labels(res.name, "error").inc()
        log.warning("%s: poll failed, cursor unchanged: %s", res.name, exc)
        try:
            previous = cursors.load_status(self.store, self.connection, res.name)
            status = PollStatus(
                at=datetime.now(UTC).isoformat(),
                result="error",
                duration=round(time.monotonic() - started, 3),
                error=f"{type(exc).__name__}: {exc}"[:500],
                last_success=previous.last_success if previous else None,
            )
            cursors.write_status(self.store, self.connection, res.name, status)
        except StateError:
            pass


class _Run:
    """The state of one poll in progress (kept off :class:`Poller`, which is shared by threads)."""

    def __init__(
        self,
        poller: Poller,
        resource: Resource,
        emit: Emit | None,
        *,
        dry_run: bool,
        on_progress: Progress | None,
        started: float,
    ) -> None:
        self.poller = poller
        self.store = poller.store
        self.connection = poller.connection
        self.options = poller.options
        self.resource = resource
        self.emit = emit
        self.dry_run = dry_run
        self.on_progress = on_progress or (lambda _count: None)
        self.started = started
        self.now = datetime.now(UTC)
        #: this poll read a timestamp ahead of this host's clock (see :meth:`_position`)
        self.ahead = False
        self.lease: Lease | None = None
        self.detector = Detector(
            resource,
            connection=self.connection,
            snapshotter=snapshotter_for(self.store, self.connection, resource, persist=not dry_run),
        )

    # the two kinds of poll ---------------------------------------------------------------
    def execute(self) -> PollResult:
        cursor = cursors.load_cursor(self.store, self.connection, self.resource.name)
        if cursor is None:
            return self._prime()
        return self._incremental(cursor)

    def _incremental(self, cursor: Cursor) -> PollResult:
        sweep = self._sweep_due(cursor)
        since = cursor.position
        if sweep and since is not None:
            since = min(since, cursor.swept_from or since) - timedelta(seconds=self.options.overlap)
        reader = self._reader(since)
        records: list[Record] = []
        for page in reader:
            records.extend(page)
        latest = self.detector.collapse(records)
        if len(latest) >= TRAIN_SAMPLES:
            self._train(list(latest.values()))
        previous = cursors.load_snapshots(self.store, self.connection, self.resource.name, latest)
        detection = self.detector.detect(latest.values(), previous, detected_at=self.now)
        position = self._position(cursor.position, _newest(records), reader)
        advanced = Cursor(
            position=position,
            primed_at=cursor.primed_at,
            advanced_at=self.now,
            # records stamped ahead of our clock: the cursor stopped at our clock, and every poll
            # sweeps until the clocks agree, so a change stamped after a correction is not missed
            swept_at=None if self.ahead else self.now if sweep else cursor.swept_at,
            swept_from=cursor.position if sweep else cursor.swept_from,
        )
        return self._finish("ok", detection, advanced, records=len(records), reader=reader)

    def _sweep_due(self, cursor: Cursor) -> bool:
        """Whether this poll re-reads the overlap window before the cursor (a *sweep*).

        Changes committed late carry a timestamp behind the cursor; only a read reaching back over
        the overlap finds them. After a burst of changes that read returns the whole burst again
        on every poll, so it is done every ``sweep_interval`` seconds, reaching back from where
        the previous sweep started (what any poll in between would have reached), and the polls in
        between read from the cursor. Resources without ``updated_at`` and ``updated_since``
        paging always sweep: their cursor is this host's clock, not a record's.
        """
        if not self.resource.has_timestamps or self.resource.name in self.options.use_updated_since:
            return True
        if cursor.swept_at is None or self.options.sweep_interval <= 0:
            return True
        return (self.now - cursor.swept_at).total_seconds() >= self.options.sweep_interval

    def _prime(self) -> PollResult:
        backfill = self.options.backfill_since.get(self.resource.name)
        if backfill is not None and not self.resource.has_timestamps:
            log.warning(
                "%s has no updated_at: backfill_since is ignored, priming instead", self.resource.name
            )
            backfill = None
        log.info(
            "%s: first poll, priming snapshots%s", self.resource.name, " with backfill" if backfill else ""
        )
        reader = self._reader(None)
        combined = Detection()
        newest: datetime | None = None
        pending: dict[str, Snapshot] = {}
        count = 0
        for page in self._trained_pages(reader):
            latest = self.detector.collapse(page)
            previous = cursors.load_snapshots(self.store, self.connection, self.resource.name, latest)
            found = self.detector.detect(
                latest.values(), previous, primed=False, backfill_since=backfill, detected_at=self.now
            )
            fired = {e.record_id for e in found.events}
            combined.events.extend(found.events)
            for rid, snapshot in found.snapshots.items():
                (combined.snapshots if rid in fired else pending)[rid] = snapshot
            count += len(page)
            newest = max(filter(None, (newest, _newest(page))), default=None)
            if len(pending) >= PRIME_CHUNK and not self.dry_run:
                self._store_snapshots(pending)
                pending = {}
            self.on_progress(count)
        combined.snapshots.update(pending)
        primed = Cursor(
            position=self._position(None, newest, reader),
            primed_at=self.now,
            advanced_at=self.now,
        )
        outcome: PollOutcome = "ok" if backfill is not None else "primed"
        return self._finish(outcome, combined, primed, records=count, reader=reader)

    def _trained_pages(self, reader: PageReader) -> Iterator[list[Record]]:
        """The reader's pages, the first ones held back until a dictionary is trained on them.

        Snapshots are compressed when taken, so the dictionary must exist before the first one:
        priming buffers up to :data:`~worker.polling.dictionaries.TRAIN_SAMPLES` records, trains,
        then goes on page by page (a short listing trains on what it has, or not at all).
        """
        pages = iter(reader)
        if self.detector.snapshotter.dictionaries.current is not None:
            yield from pages
            return
        held: list[list[Record]] = []
        for page in pages:
            held.append(page)
            if sum(map(len, held)) >= TRAIN_SAMPLES:
                break
        self._train([record for page in held for record in page])
        yield from held
        yield from pages

    def _train(self, records: Sequence[Mapping[str, Any]]) -> None:
        """A dictionary for a resource that has none (priming, or after an upgrade)."""
        if self.detector.snapshotter.dictionaries.current is None:
            self._keep_lock()
            self.detector.snapshotter.train(records)

    # committing ----------------------------------------------------------------------------
    def _finish(
        self, outcome: PollOutcome, detection: Detection, cursor: Cursor, *, records: int, reader: PageReader
    ) -> PollResult:
        snapper = self.detector.snapshotter
        contents = {e.record_id: content_hash(snapper.normals(e.record)) for e in detection.events}
        events = mark_origins(self.store, detection.events, contents)
        result = PollResult(
            resource=self.resource.name,
            outcome=outcome,
            events=events,
            records=records,
            requests=reader.requests,
            rereads=reader.restarts,
            query=reader.query.describe(),
            cursor=cursor,
            dry_run=self.dry_run,
        )
        flood = len(events) > self.options.flood_limit
        if flood:
            result.outcome = "held"
        if self.dry_run:
            pass
        elif flood:
            result.held = self._hold(events, detection.snapshots, cursor)
        else:
            self._emit_and_commit(events, detection.snapshots, cursor)
        result.duration = time.monotonic() - self.started
        return result

    def _emit_and_commit(self, events: list[Event], snapshots: dict[str, Snapshot], cursor: Cursor) -> None:
        assert self.emit is not None
        remaining = dict(snapshots)
        chunk_size = max(1, self.options.emit_chunk)
        for start in range(0, len(events), chunk_size):
            chunk = events[start : start + chunk_size]
            self._keep_lock()
            self.emit(chunk)
            self._store_snapshots({e.record_id: remaining.pop(e.record_id) for e in chunk})
        self._keep_lock()
        with self.store.batch() as batch:
            cursors.write_snapshots(batch, self.connection, self.resource.name, remaining)
            cursors.write_cursor(batch, self.connection, self.resource.name, cursor)

    def _hold(self, events: list[Event], snapshots: dict[str, Snapshot], cursor: Cursor) -> held.HeldBatch:
        self._keep_lock()
        with self.store.batch() as batch:
            batch_held = held.hold(
                batch,
                self.connection,
                self.resource.name,
                events,
                limit=self.options.flood_limit,
                now=self.now,
            )
            cursors.write_snapshots(batch, self.connection, self.resource.name, snapshots)
            cursors.write_cursor(batch, self.connection, self.resource.name, cursor)
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

    def _store_snapshots(self, snapshots: Mapping[str, Snapshot]) -> None:
        if snapshots and not self.dry_run:
            with self.store.batch() as batch:
                cursors.write_snapshots(batch, self.connection, self.resource.name, snapshots)

    # helpers -------------------------------------------------------------------------------
    def _reader(self, since: datetime | None) -> PageReader:
        query = Query(
            resource=self.resource,
            since=since,
            use_updated_since=self.resource.name in self.options.use_updated_since,
            page_size=self.options.page_size,
        )
        return PageReader(self.poller.source, query, before_request=self._check_lock)

    def _check_lock(self) -> None:
        """Before a request: stop if the lease keeper lost the lock or the poll is out of time."""
        if self.lease is None:
            return
        if not self.lease.held or time.monotonic() - self.started > self.options.timeout:
            raise PollAborted(
                f"{self.resource.name}: lost the poll lock (the poll outlived PPW_POLL_TIMEOUT="
                f"{self.options.timeout:g}s, or this process stalled past PPW_POLL_LEASE="
                f"{self.options.lease:g}s); nothing further was committed"
            )

    def _keep_lock(self) -> None:
        """Before a write: renew the lock (one round trip), so the write is made while it is ours."""
        self._check_lock()
        if self.lease is not None and not self.lease.renew():
            self._check_lock()

    def _position(self, old: datetime | None, newest: datetime | None, reader: PageReader) -> datetime | None:
        """The new cursor: the greatest ``updated_at`` read, never earlier than the old one.

        Record times are used, not the local clock, except as a ceiling: a timestamp ahead of this
        host's clock is not trusted as a cursor (the clock that stamped it may be corrected later).

        Resources without ``updated_at`` have no record time, so their cursor is this poll's start
        (read against ``updated_since`` with the overlap covering clock differences). Offset paging
        (``updated_since``) cannot revisit a record edited after it was read, so when such a poll
        outlasts the overlap the cursor stays back by the excess.
        """
        if not self.resource.has_timestamps:
            candidate: datetime | None = self.now
        else:
            candidate = newest
            if candidate is not None and candidate > self.now:
                # A timestamp from the future (a server clock ahead of ours, which may later be
                # corrected to behind ours): the cursor stops at our clock, so the overlap still
                # covers changes stamped after the correction. Small leads are routine; say so
                # only when the lead exceeds the overlap.
                ahead = (candidate - self.now).total_seconds()
                if ahead > self.options.overlap:
                    log.warning(
                        "%s: PracticePanther timestamps run %.0fs ahead of this host's clock; the "
                        "cursor stops at this host's time and recent changes are re-read until the "
                        "clocks agree",
                        self.resource.name,
                        ahead,
                    )
                candidate = self.now
                self.ahead = True
            if candidate is not None and reader.query.use_updated_since:
                excess = time.monotonic() - self.started - self.options.overlap
                if excess > 0:
                    candidate -= timedelta(seconds=excess)
        if old is None:
            return candidate
        return max(old, candidate) if candidate is not None else old


def _newest(records: Iterable[Record]) -> datetime | None:
    stamps = (parse_revision(r.get("updated_at")) for r in records)
    return max((s for s in stamps if s is not None), default=None)
