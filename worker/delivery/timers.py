"""Waiting runs, indexed by the moment they wake: the durable half of the ``wait`` step.

A run that waits is *stored*: its record says ``waiting`` with its wake time, its wait step's
ledger entry holds the due moment, and its id is in the sorted set ``timers``, scored by that
moment. Nothing of it stays in memory or in a broker's delay queue, so a wait survives whatever
the state store survives (SIGKILL, restarts of every process, a Redis restart with AOF, upgrades).

The scheduler's leader looks twice a second (:class:`TimerPump`): one sorted-set read of what is
due, however many wait. Each due run moves, in one atomic write, to ``timers-sent`` scored by when
to send it again (:data:`SENT_TTL` later), and then gets its run message. So the next look, or a
second leader during a failover, does not send it again, a burst of thousands due at once goes
out a thousand a look without the first thousand blocking the rest, and a run whose worker died
with the message is sent again when its score comes. Waking twice is harmless: the run lease lets
one worker at a time in, and the ledger runs each step once; an early wake just waits again. The
run leaves both sets when it passes its wait (or is cancelled).

Keys (under ``ppw:<connection>:``): ``timers`` and ``timers-sent`` (sorted sets of run ids),
``rule-waiting:<bucket>`` (hashes: a digest of rule, resource and record → the run waiting for
them; kept for runs of modes ``single`` and ``restart`` only, which ask). The marker is a 12-byte
digest in one of :data:`MARK_BUCKETS` small hashes rather than the names in one big hash: a small
hash is stored compactly (Redis's listpack, up to 128 fields by default), which is what keeps a
marked timer under 200 bytes; a digest collision (72 bits) is as likely as none ever seen.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from worker.delivery.history import Run, RunHistory, RunNotFound, queue_key, run_lease_key
from worker.errors import PpwError
from worker.observability import metrics
from worker.state.base import StateStore, WriteBatch, key
from worker.state.locks import Lease

log = logging.getLogger(__name__)

#: A woken run's message is sent again after this long if the run is still waiting (its worker
#: may have died with the message).
SENT_TTL = 30.0
#: Runs woken per look; more due at once are taken by the next looks, a second apart.
WAKE_BATCH = 1000
#: ``ppw_timers_pending`` is counted this often (seconds): a look itself is one store call.
COUNT_EVERY = 15.0

#: The modes that ask which run waits for a record (the others need no marker, and save its bytes).
MARKED_MODES = frozenset({"single", "restart"})
#: Small hashes the markers are spread over: listpack-sized (≤ 128 fields) up to ~200,000 markers.
MARK_BUCKETS = 2048

Send = Callable[[str, list[str]], None]
Clock = Callable[[], float]


def timers_key(connection: str) -> str:
    return key(connection, "timers")


def sent_key(connection: str) -> str:
    return key(connection, "timers-sent")


def _legacy_key(connection: str) -> str:
    """The one big marker hash earlier versions wrote (rule, resource and record spelled out)."""
    return key(connection, "rule-waiting")


def _legacy_field(run: Run) -> str:
    return "\x1f".join((run.rule_id, run.event.resource, run.event.record_id))


def _marker(run: Run) -> tuple[str, str]:
    """The hash and field marking which run of ``run``'s rule waits for its record."""
    digest = hashlib.blake2b(_legacy_field(run).encode(), digest_size=11).digest()
    bucket = int.from_bytes(digest[:2], "big") % MARK_BUCKETS
    return key(run.connection, "rule-waiting", f"{bucket:03x}"), base64.b64encode(digest[2:]).decode()


class Timers:
    """The index of waiting runs of every connection in ``store``."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._legacy_gone: set[str] = set()

    def add(self, batch: WriteBatch, run: Run, due: float) -> None:
        batch.zadd(timers_key(run.connection), {run.id: due})
        batch.zrem(sent_key(run.connection), run.id)  # woken early: it waits again, due then
        if run.mode in MARKED_MODES:
            bucket, field = _marker(run)
            batch.hset(bucket, {field: run.id})

    def remove(self, batch: WriteBatch, run: Run) -> None:
        batch.zrem(timers_key(run.connection), run.id)
        batch.zrem(sent_key(run.connection), run.id)
        if run.mode in MARKED_MODES:
            bucket, field = _marker(run)
            batch.hdel(bucket, field)
            batch.hdel(_legacy_key(run.connection), _legacy_field(run))  # marked before the upgrade

    def due(self, connection: str, now: float, limit: int = WAKE_BATCH) -> list[tuple[str, float]]:
        return self.store.zrange_by_score(timers_key(connection), maximum=now, limit=limit)

    def resend(self, connection: str, now: float, limit: int = WAKE_BATCH) -> list[tuple[str, float]]:
        """Runs woken at least :data:`SENT_TTL` ago and still waiting (their message was lost)."""
        return self.store.zrange_by_score(sent_key(connection), maximum=now, limit=limit)

    def oldest_due(self, connection: str, now: float | None = None) -> float | None:
        """The moment of the oldest timer already due (None: none is); the timer's score."""
        found = self.store.zrange_by_score(timers_key(connection), maximum=now or time.time(), limit=1)
        return found[0][1] if found else None

    def upcoming(self, connection: str, limit: int = 100) -> list[tuple[str, float]]:
        """The waiting runs soonest first, with their wake time (sent ones included)."""
        found = self.store.zrange_by_score(timers_key(connection), limit=limit)
        found += self.store.zrange_by_score(sent_key(connection), limit=limit)
        return sorted(found, key=lambda item: item[1])[:limit]

    def pending(self, connection: str) -> int:
        return self.store.zcard(timers_key(connection)) + self.store.zcard(sent_key(connection))

    def waiting_run(self, run: Run) -> str | None:
        """The id of the run of ``run``'s rule waiting for its record, if another one is (modes
        ``single`` and ``restart``: the runs of a rule share its mode)."""
        found = self.store.hget(*_marker(run))
        if found is None and self._legacy(run.connection):
            found = self.store.hget(_legacy_key(run.connection), _legacy_field(run))
        return found if found and found != run.id else None

    def _legacy(self, connection: str) -> bool:
        """Whether markers written before the upgrade may still be there (asked until none is:
        nothing writes that hash any more, so once empty it stays empty)."""
        if connection in self._legacy_gone:
            return False
        if self.store.hlen(_legacy_key(connection)) == 0:
            self._legacy_gone.add(connection)
            return False
        return True


@dataclass
class TimerPump:
    """Wakes due runs: the scheduler's leader calls :meth:`tick` twice a second.

    Parameters
    ----------
    store:
        The state store holding the timer index.
    connection:
        The connection whose runs are woken.
    send:
        ``send(connection, run_ids)`` sends their run messages (the actors' ``send_runs``).
    clock:
        Unix time now (tests move it).
    """

    store: StateStore
    connection: str
    send: Send
    clock: Clock = time.time
    _counted: float = float("-inf")
    _resent: float = float("-inf")

    def tick(self) -> int:
        """Send the run messages of the runs due now, and again of those woken :data:`SENT_TTL`
        ago that still wait. With nothing due this is one sorted-set read (two every
        :data:`SENT_TTL`, for the lost ones), whatever the number of timers pending."""
        now = self.clock()
        timers = Timers(self.store)
        due = timers.due(self.connection, now)
        again: list[tuple[str, float]] = []
        if now - self._resent >= SENT_TTL:
            self._resent = now
            again = timers.resend(self.connection, now)
        if now - self._counted >= COUNT_EVERY:
            self._counted = now
            metrics.TIMERS_PENDING.set(timers.pending(self.connection))
        woken = dict(again) | dict(due)
        if not woken:
            return 0
        with self.store.batch() as batch:
            batch.zrem(timers_key(self.connection), *dict(due))
            batch.zadd(sent_key(self.connection), {run_id: now + SENT_TTL for run_id in woken})
        self.send(self.connection, list(woken))
        for _run_id, at in due:
            metrics.TIMERS_FIRED.inc()
            metrics.TIMER_LATENESS.observe(max(now - at, 0.0))
        log.info("woke %d waiting run(s)%s", len(woken), f", {len(again)} again" if again else "")
        return len(woken)


class RunBusy(PpwError):
    """The run is being executed right now (a worker holds its lease): try again shortly."""


def cancel_waiting(
    history: RunHistory, store: StateStore, connection: str, run_id: str, reason: str, *, lease_ttl: float
) -> Run:
    """End a waiting run as ``cancelled`` (``ppw runs cancel``, mode ``restart``, a deleted rule).

    Taken under the run's lease, so a worker waking it at this moment cannot run on: whichever
    gets the lease first decides. Raises :class:`RunBusy` when a worker holds it, and
    :class:`~worker.delivery.history.RunNotFound` for an unknown run; a run that is not waiting
    is returned unchanged.
    """
    lease = Lease(store, run_lease_key(connection, run_id), ttl=lease_ttl)
    if not lease.acquire():
        raise RunBusy(f"run {run_id} is being executed right now; try again in a moment")
    try:
        run = history.get(connection, run_id)
        if run.status != "waiting":
            return run
        cancelled = end_waiting(history, store, run, reason)
        log.info("run %s cancelled while waiting: %s", run_id, reason)
        return cancelled
    finally:
        lease.release()


@dataclass(frozen=True)
class Retired:
    """What :func:`cancel_rule_waits` did: runs cancelled, and runs it could not take (a worker
    was executing them: they are tried again, or their worker cancels them when it sees the rule
    gone)."""

    cancelled: int = 0
    busy: int = 0


def cancel_rule_waits(
    history: RunHistory,
    store: StateStore,
    connection: str,
    reasons: Mapping[str, str],
    *,
    lease_ttl: float,
    chunk: int = 500,
) -> Retired:
    """Cancel every waiting run of the rules in ``reasons`` (rule id → why), each under its lease.

    The timer index holds run ids only, so the waiting runs are read a chunk at a time to find
    their rule: a cost paid when a rule is deleted or disabled, never by a look of the pump.
    Idempotent: a run no longer waiting is left as it is.
    """
    ids = [run_id for run_id, _ in store.zrange_by_score(timers_key(connection))]
    ids += [run_id for run_id, _ in store.zrange_by_score(sent_key(connection))]
    cancelled = busy = 0
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        for raw in store.get_many([history.key(connection, run_id) for run_id in part]):
            run = history.parse(raw)
            if run is None or run.status != "waiting" or run.rule_id not in reasons:
                continue
            try:
                ended = cancel_waiting(
                    history, store, connection, run.id, reasons[run.rule_id], lease_ttl=lease_ttl
                )
                cancelled += ended.status == "cancelled"
            except RunBusy:
                busy += 1
            except RunNotFound:
                continue
    return Retired(cancelled, busy)


def end_waiting(history: RunHistory, store: StateStore, run: Run, reason: str) -> Run:
    """Write ``run`` (waiting, its lease held by the caller) as cancelled, out of the timer index
    and of its record's queue, in one write; the cancelled run."""
    now = time.time()
    steps = [
        s.model_copy(update={"status": "cancelled"}) if s.id == run.waiting_step else s for s in run.steps
    ]
    cancelled = run.model_copy(
        update={
            "status": "cancelled",
            "reason": reason,
            "finished_at": now,
            "wake_at": None,
            "steps": steps,
            "duration_ms": (now - (run.started_at or now)) * 1000,
        }
    )
    with store.batch() as batch:
        history.write(batch, cancelled)
        Timers(store).remove(batch, run)
        if run.mode == "queued":
            batch.zrem(queue_key(run), run.id)
    metrics.RULE_RUNS.labels(run.rule_id, "cancelled").inc()
    return cancelled


def wake_now(
    history: RunHistory, store: StateStore, connection: str, run_id: str, *, lease_ttl: float
) -> bool:
    """Make a waiting run due now (an approval was decided): it is woken by the next look of the
    pump, like any due timer, so waking stays the pump's job and happens once.

    Taken under the run's lease, so it cannot race the run storing its wait (which would put the
    later wake time back). False when a worker holds the lease (try again shortly); True when
    done, or when the run is not waiting (a run not waiting reads the decision when it runs).
    """
    lease = Lease(store, run_lease_key(connection, run_id), ttl=lease_ttl)
    if not lease.acquire():
        return False
    try:
        run = history.find(connection, run_id)
        if run is None or run.status != "waiting":
            return True
        with store.batch() as batch:
            batch.zadd(timers_key(connection), {run_id: time.time()})
            batch.zrem(sent_key(connection), run_id)
        log.info("run %s woken: its approval was decided", run_id)
        return True
    finally:
        lease.release()
