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

Which resources: ``PPW_POLL_RESOURCES`` plus every resource a loaded rule watches, read again
every heartbeat, so a rule reload adds or removes jobs without a restart.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from worker.polling.poller import poll_lock_key, poll_pending_key
from worker.practicepanther import resources
from worker.settings import Settings
from worker.state.base import StateError, StateStore, key
from worker.state.locks import Lease

log = logging.getLogger(__name__)

Submit = Callable[[str, str], None]
ResourceSource = Callable[[], Iterable[str]]

#: Longest leader lease: a dead leader is replaced within about this long, whatever the interval.
MAX_LEADER_TTL = 30.0


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
    poll_timeout:
        How long a submitted poll may stay queued before the job submits another.
    leader_ttl:
        Lease time-to-live; default ``min(interval, 30)``.
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
        poll_timeout: float = 300.0,
        leader_ttl: float | None = None,
    ) -> None:
        self.store = store
        self.submit = submit
        self.resources = resources
        self.connection = connection
        self.interval = interval
        self.jitter = jitter
        self.poll_timeout = poll_timeout
        self.leader_ttl = leader_ttl or max(1.0, min(interval, MAX_LEADER_TTL))
        self.lease = Lease(store, leader_key(connection), self.leader_ttl)
        self._leader_until = 0.0  # monotonic time our lease surely lasts until
        self._lock = threading.Lock()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.submitted = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, store: StateStore, submit: Submit, watched: ResourceSource = lambda: ()
    ) -> PollScheduler:
        return cls(
            store,
            submit,
            lambda: polled_resources(settings, watched()),
            connection=settings.connection_id,
            interval=settings.poll_interval,
            jitter=settings.poll_jitter,
            poll_timeout=settings.poll_timeout,
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

    def shutdown(self) -> None:
        """Stop scheduling and hand leadership over at once (instead of after the lease lapses)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        with self._lock:
            if self.lease.held:
                try:
                    self.lease.release()
                except StateError:
                    log.warning("could not release the leader lease; it lapses in %gs", self.leader_ttl)
            self._leader_until = 0.0

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

    # jobs ----------------------------------------------------------------------------------------
    def heartbeat(self) -> None:
        """Renew (or try to take) the leader lease, then sync the jobs with the watched resources."""
        with self._lock:
            was_leader = self.is_leader
            asked = time.monotonic()
            try:
                held = self.lease.acquire()
            except StateError as exc:
                log.warning("scheduler cannot reach the state store: %s", exc)
                held = False
            # Count the lease from before we asked: never believe it lasts longer than it does.
            self._leader_until = asked + self.leader_ttl * 0.9 if held else 0.0
            if held and not was_leader:
                log.info("this scheduler is now the leader for connection %s", self.connection)
            elif was_leader and not held:
                log.warning("this scheduler lost the leadership for connection %s", self.connection)
        try:
            self._sync_jobs()
        except Exception:
            log.exception("could not update the poll jobs; keeping the current ones")

    def _sync_jobs(self) -> None:
        wanted = {f"poll:{self.connection}:{name}": name for name in self.resources()}
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

    def tick(self, resource: str) -> bool:
        """One turn of ``resource``'s job: submit a poll if we lead and none is pending; True if sent."""
        if not self.is_leader:
            return False
        try:
            if self.store.get(poll_lock_key(self.connection, resource)) is not None:
                log.debug("%s: previous poll still running; skipping this turn", resource)
                return False
            pending = poll_pending_key(self.connection, resource)
            if not self.store.set_if_absent(pending, datetime.now(UTC).isoformat(), ttl=self.poll_timeout):
                log.debug("%s: previous poll still queued; skipping this turn", resource)
                return False
        except StateError as exc:
            log.warning("%s: cannot check for a poll in flight: %s", resource, exc)
            return False
        try:
            self.submit(self.connection, resource)
        except Exception:
            with suppress(StateError):
                self.store.delete(pending)
            log.exception("%s: could not submit the poll", resource)
            return False
        self.submitted += 1
        return True
