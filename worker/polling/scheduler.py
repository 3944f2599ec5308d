"""``ppw scheduler``: ask for a poll of every watched resource at its interval, from one leader.

Several scheduler processes may run (on several hosts) so that polling survives one of them dying.
They elect a leader with a lease in the state store: only the leader submits polls, renewing its
lease every third of its time-to-live; when it dies, the lease lapses and another process takes
over within ``leader_ttl`` plus one renewal period (less than two poll intervals by default). A
scheduler shutting down cleanly hands the lease over at once.

Each (connection, resource) is one APScheduler interval job. Jitter is a random phase given to
each job once, not a delay added to every run: polls of many resources spread out instead of
hitting PracticePanther together, while each resource is still polled exactly every interval, so a
change waits at most one interval (plus the poll itself) to be seen. A job skips its turn while the
previous poll of that resource is still queued or running (the poller's own lock guarantees at
most one poll in flight; the skip keeps the queue from filling with polls nobody needs).

Neither skip waits on a dead process. The poll lock is a short lease renewed while the poll runs,
so a worker killed mid-poll blocks the resource for ``PPW_POLL_LEASE`` (30 s) at most. The
"queued" marker lasts that long too: a poll message that a dead worker had already fetched (the
broker hands it to another worker only after its own randomised maintenance) is simply sent again.
A duplicate poll message costs one cheap, idle poll, or finds the lock taken and does nothing.
A turn skipped for either reason looks again when the lock or marker would lapse (a one-off job),
not a whole interval later, and a scheduler that takes the leadership over polls every resource at
once: after a crash, polling resumes within about 30 s whatever the interval.

Which resources: ``PPW_POLL_RESOURCES`` plus every resource a loaded rule watches, read again
every heartbeat, so a rule reload adds or removes jobs without a restart.

Reconciles (:mod:`~worker.polling.reconcile`, which find deleted records) have a job per resource
too, which looks every few minutes whether the last reconcile (or the priming, which listed every
record) is older than the resource's ``PPW_RECONCILE_INTERVAL``: the cadence is counted from
stored times, so a daily reconcile still happens daily when the scheduler restarts more often
than that. A failed one is tried again within an hour. The same lock and "queued" marker as for
polls keep one in flight.

Stopping is bounded (:meth:`PollScheduler.shutdown`): the jobs run on daemon threads, and a job
still waiting on the state store when the time is up is abandoned (and logged), never waited for
without limit. Abandoning one loses nothing: a heartbeat only renews the lease (which then lapses)
and a poll turn only asks for a poll that the next leader, or the next start, asks for again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from worker.polling import cursors
from worker.polling.poller import poll_lock_key, poll_pending_key
from worker.polling.reconcile import ReconcileOptions, load_status, lock_key, pending_key
from worker.practicepanther import resources
from worker.settings import Settings
from worker.state.base import StateError, StateStore, key
from worker.state.locks import Lease

log = logging.getLogger(__name__)

Submit = Callable[[str, str], None]
ResourceSource = Callable[[], Iterable[str]]
Interval = Callable[[str], float]

#: Longest leader lease: a dead leader is replaced within about this long, whatever the interval.
MAX_LEADER_TTL = 30.0
#: How long :meth:`PollScheduler.shutdown` waits, by default, for a heartbeat or poll turn under way.
SHUTDOWN_TIMEOUT = 2.0
#: At least this long for handing the leader lease over, after that wait.
HANDOVER_TIMEOUT = 0.5
#: How often a reconcile job looks whether its resource is due (at most).
RECONCILE_CHECK = 300.0
#: A failed reconcile is tried again after this long (or its interval, if shorter).
RECONCILE_RETRY = 3600.0


def leader_key(connection: str) -> str:
    return key(connection, "scheduler", "leader")


def polled_resources(settings: Settings, watched: Iterable[str] = ()) -> list[str]:
    """``PPW_POLL_RESOURCES`` plus ``watched`` (from the rules), as pollable catalogue names.

    Unknown or unpollable names in the settings are logged; in ``watched`` names that are not
    resources (webhook trigger names) are skipped silently.
    """
    names: list[str] = []
    for raw, configured in [*((n, True) for n in settings.poll_resources), *((n, False) for n in watched)]:
        resolved = resources.resolve_name(raw)
        if resolved is None:
            if configured:
                log.warning("unknown resource %r in PPW_POLL_RESOURCES; not polled", raw)
        elif not resources.get(resolved).pollable:
            log.warning("%s cannot be polled (PracticePanther lists no changes for it)", resolved)
        elif resolved not in names:
            names.append(resolved)
    return names


class _DaemonThreads(Executor):
    """Runs each job on a daemon thread of its own.

    APScheduler's default pool, :class:`concurrent.futures.ThreadPoolExecutor`, has its threads
    joined when the interpreter exits, for as long as their job takes: one job waiting on a locked
    SQLite file (``busy_timeout``) or an unreachable Redis would keep ``ppw run`` alive after it
    was told to stop. :meth:`PollScheduler.shutdown` bounds the wait for jobs itself. The jobs are
    few (a heartbeat, a poll turn per resource and interval), so a thread each costs nothing.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)

        threading.Thread(target=run, name="ppw-poll-job", daemon=True).start()
        return future


class _DaemonExecutor(BasePoolExecutor):  # type: ignore[misc]  # APScheduler is untyped
    """APScheduler's pool executor on :class:`_DaemonThreads`."""

    def __init__(self) -> None:
        super().__init__(_DaemonThreads())


class PollScheduler:
    """Submits polls on a schedule while this process is the leader.

    Parameters
    ----------
    store:
        Holds the leader lease and the poll locks (Redis when several hosts run schedulers).
    submit:
        ``submit(connection, resource)`` starts a poll: sends the Dramatiq poll message (or, in a
        test, runs it). It must not block for long.
    resources:
        Called on every heartbeat for the resources to poll.
    connection:
        The connection whose resources are polled.
    interval, jitter:
        Seconds between polls of one resource, and the random delay added to each.
    pending_ttl:
        How long a submitted poll may stay queued (not yet started) before the job submits another:
        a message fetched by a worker that then died is not waited for.
    leader_ttl:
        Lease time-to-live; default ``min(interval, 30)``.
    reconcile, reconcile_interval:
        ``reconcile(connection, resource)`` starts a reconcile (sends its message), and
        ``reconcile_interval(resource)`` gives its cadence in seconds (0: never). Without
        ``reconcile`` no reconcile is scheduled.
    """

    def __init__(
        self,
        store: StateStore,
        submit: Submit,
        resources: ResourceSource,
        *,
        connection: str = "default",
        interval: float = 60.0,
        jitter: float = 5.0,
        pending_ttl: float = 30.0,
        leader_ttl: float | None = None,
        reconcile: Submit | None = None,
        reconcile_interval: Interval = lambda _resource: 0.0,
    ) -> None:
        self.store = store
        self.submit_reconcile = reconcile
        self.reconcile_interval = reconcile_interval
        self.submit = submit
        self.resources = resources
        self.connection = connection
        self.interval = interval
        self.jitter = jitter
        self.pending_ttl = pending_ttl
        self.leader_ttl = leader_ttl or max(1.0, min(interval, MAX_LEADER_TTL))
        self.lease = Lease(store, leader_key(connection), self.leader_ttl)
        self._leader_until = 0.0  # monotonic time our lease surely lasts until
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._running: Counter[str] = Counter()  # the jobs under way, by what they do
        self._idle = threading.Condition()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": _DaemonExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.submitted = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: StateStore,
        submit: Submit,
        watched: ResourceSource = lambda: (),
        *,
        reconcile: Submit | None = None,
    ) -> PollScheduler:
        options = ReconcileOptions.from_settings(settings)
        return cls(
            store,
            submit,
            lambda: polled_resources(settings, watched()),
            connection=settings.connection_id,
            interval=settings.poll_interval,
            jitter=settings.poll_jitter,
            pending_ttl=settings.poll_lease,
            reconcile=reconcile,
            reconcile_interval=options.interval_for,
        )

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.heartbeat()
        self._scheduler.add_job(
            self.heartbeat,
            IntervalTrigger(seconds=self.leader_ttl / 3),
            id="leader-heartbeat",
        )
        self._scheduler.start()
        log.info(
            "scheduler started for connection %s: every %gs (phases spread over %gs), leader lease %gs",
            self.connection,
            self.interval,
            self.jitter,
            self.leader_ttl,
        )

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> bool:
        """Stop scheduling and hand leadership over at once (instead of after the lease lapses).

        Waits up to ``timeout`` seconds for a heartbeat or poll turn under way (a few milliseconds,
        unless the state store is slow or locked), then at least :data:`HANDOVER_TIMEOUT` more for
        the lease's release. What is still running then is abandoned and logged: it runs on a
        daemon thread, so it cannot keep the process from exiting, and it loses nothing (see the
        module's documentation). Returns False when something was abandoned.

        APScheduler's own ``shutdown(wait=True)`` is not used: it waits for the running jobs while
        holding the scheduler's job-store lock, which a heartbeat needs to sync the jobs. A stop
        that began while a heartbeat was writing its lease (SQLite waiting out another writer, or
        just an fsync) therefore deadlocked for good: ``ppw run`` never exited after SIGTERM.
        """
        began = time.monotonic()
        deadline = began + max(timeout, 0.0)
        self._stopping.set()  # jobs under way stop at their next step; jobs still queued do nothing
        self._leader_until = 0.0  # from now on nothing acts as the leader here
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)  # holds its locks only briefly; waits for nothing
        clean = True
        abandoned = self._wait_for_jobs(deadline)
        if abandoned:
            clean = False
            log.warning(
                "scheduler: %s still waiting on the state store after %.1fs; abandoned (the next "
                "leader or the next start polls again)",
                ", ".join(abandoned),
                time.monotonic() - began,
            )
        handover = threading.Thread(target=self._hand_over, name="ppw-scheduler-handover", daemon=True)
        handover.start()
        handover.join(max(deadline - time.monotonic(), HANDOVER_TIMEOUT))
        if handover.is_alive():
            clean = False
            log.warning(
                "scheduler: could not release the leader lease in time (the state store does not "
                "answer); it lapses in %gs",
                self.leader_ttl,
            )
        return clean

    def _hand_over(self) -> None:
        with self._lock:  # after a heartbeat under way: it may have just renewed the lease
            if self.lease.held:
                try:
                    self.lease.release()
                except StateError:
                    log.warning("could not release the leader lease; it lapses in %gs", self.leader_ttl)
            self._leader_until = 0.0

    @contextmanager
    def _job(self, what: str) -> Iterator[None]:
        """Count a job as under way, for :meth:`shutdown` to wait for (and name, if abandoned)."""
        with self._idle:
            self._running[what] += 1
        try:
            yield
        finally:
            with self._idle:
                self._running[what] -= 1
                if self._running[what] <= 0:
                    del self._running[what]
                if not self._running:
                    self._idle.notify_all()

    def _wait_for_jobs(self, deadline: float) -> list[str]:
        """Wait until no job is under way or ``deadline`` passes; the jobs still under way."""
        with self._idle:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            return sorted(self._running)

    def __enter__(self) -> PollScheduler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._leader_until

    @property
    def jobs(self) -> list[str]:
        return sorted(job.id for job in self._scheduler.get_jobs() if job.id.startswith("poll:"))

    def every(self, job_id: str, seconds: float, func: Callable[[], object]) -> None:
        """Also run ``func`` every ``seconds`` while this process leads, the first time a second
        after start (the refresh of the custom field definitions). A failure is logged and the
        next turn tries again; ``func`` must not block for long."""

        def turn() -> None:
            with self._job(job_id):
                if self._stopping.is_set() or not self.is_leader:
                    return
                try:
                    func()
                except Exception:
                    log.exception("%s failed; trying again in %gs", job_id, seconds)

        first = datetime.now(UTC) + timedelta(seconds=1)
        self._scheduler.add_job(
            turn, IntervalTrigger(seconds=seconds, start_date=first), id=job_id, next_run_time=first
        )

    # jobs ----------------------------------------------------------------------------------------
    def heartbeat(self) -> None:
        """Renew (or try to take) the leader lease, then sync the jobs with the watched resources."""
        with self._job("the leader heartbeat"):
            with self._lock:
                if self._stopping.is_set():
                    return
                was_leader = self.is_leader
                asked = time.monotonic()
                try:
                    held = self.lease.acquire()
                except StateError as exc:
                    log.warning("scheduler cannot reach the state store: %s", exc)
                    held = False
                # Count the lease from before we asked: never believe it lasts longer than it does.
                leads = held and not self._stopping.is_set()
                self._leader_until = asked + self.leader_ttl * 0.9 if leads else 0.0
                if leads and not was_leader:
                    log.info("this scheduler is now the leader for connection %s", self.connection)
                elif was_leader and not held and not self._stopping.is_set():
                    log.warning("this scheduler lost the leadership for connection %s", self.connection)
            if self._stopping.is_set():
                return
            try:
                self._sync_jobs()
                if leads and not was_leader:
                    self._poll_all_soon()
            except Exception:
                log.exception("could not update the poll jobs; keeping the current ones")

    def _sync_jobs(self) -> None:
        names = list(self.resources())
        self._sync_reconciles(names)
        wanted = {f"poll:{self.connection}:{name}": name for name in names}
        current = {job.id for job in self._scheduler.get_jobs() if job.id.startswith("poll:")}
        for job_id in current - set(wanted):
            self._scheduler.remove_job(job_id)
            log.info("no longer polling %s", job_id.rsplit(":", 1)[-1])
        for job_id in sorted(set(wanted) - current):
            first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, self.jitter))
            self._scheduler.add_job(
                self.tick,
                IntervalTrigger(seconds=self.interval, start_date=first),
                args=[wanted[job_id]],
                id=job_id,
                next_run_time=first,
            )
            log.info("polling %s every %gs", wanted[job_id], self.interval)

    def _sync_reconciles(self, names: list[str]) -> None:
        wanted: dict[str, tuple[str, float]] = {}
        if self.submit_reconcile is not None:
            for name in names:
                interval = self.reconcile_interval(name)
                if interval > 0:
                    wanted[f"reconcile:{self.connection}:{name}"] = (name, interval)
        current = {job.id for job in self._scheduler.get_jobs() if job.id.startswith("reconcile:")}
        for job_id in current - set(wanted):
            self._scheduler.remove_job(job_id)
        for job_id in sorted(set(wanted) - current):
            name, interval = wanted[job_id]
            first = datetime.now(UTC) + timedelta(seconds=random.uniform(1, 1 + self.jitter))
            self._scheduler.add_job(
                self.reconcile_tick,
                IntervalTrigger(seconds=min(interval, RECONCILE_CHECK), start_date=first),
                args=[name],
                id=job_id,
                next_run_time=first,
            )
            log.info("reconciling %s every %gs (deleted records)", name, interval)

    def _poll_all_soon(self) -> None:
        """Bring every poll job's next turn forward to now (spread over the jitter): a scheduler
        taking over from a dead leader does not leave the resources unpolled for an interval."""
        for job in self._scheduler.get_jobs():
            if job.id.startswith("poll:"):
                soon = datetime.now(UTC) + timedelta(seconds=random.uniform(0, self.jitter))
                if job.next_run_time is None or soon < job.next_run_time:
                    job.modify(next_run_time=soon)

    def _look_again(self, resource: str, blocker: str) -> None:
        """A turn was skipped for ``blocker`` (the poll lock or the queued marker): take another
        turn once it would lapse, if that comes before the job's next regular turn."""
        left = self.store.ttl(blocker)
        if left is None:
            return
        when = datetime.now(UTC) + timedelta(seconds=left + 0.2)
        regular = self._scheduler.get_job(f"poll:{self.connection}:{resource}")
        if regular is not None and regular.next_run_time is not None and regular.next_run_time <= when:
            return
        self._scheduler.add_job(
            self.tick,
            DateTrigger(when),
            args=[resource],
            id=f"again:{self.connection}:{resource}",
            replace_existing=True,
        )

    def tick(self, resource: str) -> bool:
        """One turn of ``resource``'s job: submit a poll if we lead and none is pending; True if sent."""
        with self._job(f"the poll turn of {resource}"):
            return self._tick(resource)

    def _tick(self, resource: str) -> bool:
        if self._stopping.is_set() or not self.is_leader:
            return False
        lock = poll_lock_key(self.connection, resource)
        pending = poll_pending_key(self.connection, resource)
        sent = self._send_once(resource, "poll", lock, pending, self.submit, look_again=True)
        if sent:
            self.submitted += 1
        return sent

    def reconcile_tick(self, resource: str) -> bool:
        """One look of ``resource``'s reconcile job: submit one if due; True if sent."""
        with self._job(f"the reconcile check of {resource}"):
            if self.submit_reconcile is None or self._stopping.is_set() or not self.is_leader:
                return False
            try:
                if not self._reconcile_due(resource):
                    return False
            except StateError as exc:
                log.warning("%s: cannot tell whether a reconcile is due: %s", resource, exc)
                return False
            lock = lock_key(self.connection, resource)
            pending = pending_key(self.connection, resource)
            return self._send_once(
                resource, "reconcile", lock, pending, self.submit_reconcile, look_again=False
            )

    def _reconcile_due(self, resource: str) -> bool:
        """Due ``reconcile_interval`` after the last reconcile, or after priming (which listed
        everything); a failed one is retried within :data:`RECONCILE_RETRY`."""
        cursor = cursors.load_cursor(self.store, self.connection, resource)
        if cursor is None:
            return False  # not primed: nothing is tracked yet
        interval = self.reconcile_interval(resource)
        last = load_status(self.store, self.connection, resource)
        if last is None:
            since, wait = cursor.primed_at, interval
        else:
            since = datetime.fromisoformat(last.at)
            wait = min(interval, RECONCILE_RETRY) if last.result == "error" else interval
        return (datetime.now(UTC) - since).total_seconds() >= wait

    def _send_once(
        self, resource: str, what: str, lock: str, pending: str, submit: Submit, *, look_again: bool
    ) -> bool:
        """Submit unless one is running (``lock``) or queued (``pending``, set here with a TTL)."""
        try:
            if self.store.get(lock) is not None:
                log.debug("%s: previous %s still running; skipping this turn", resource, what)
                if look_again:
                    self._look_again(resource, lock)
                return False
            if not self.store.set_if_absent(pending, datetime.now(UTC).isoformat(), ttl=self.pending_ttl):
                log.debug("%s: previous %s still queued; skipping this turn", resource, what)
                if look_again:
                    self._look_again(resource, pending)
                return False
        except StateError as exc:
            log.warning("%s: cannot check for a %s in flight: %s", resource, what, exc)
            return False
        if self._stopping.is_set():  # stopping meanwhile: leave it to the next leader or start
            with suppress(StateError):
                self.store.delete(pending)
            return False
        try:
            submit(self.connection, resource)
        except Exception:
            with suppress(StateError):
                self.store.delete(pending)
            log.exception("%s: could not submit the %s", resource, what)
            return False
        return True
