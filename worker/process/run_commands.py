"""What the operator commands (``ppw runs``, ``ppw dlq``) do, so the CLI only parses and prints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from worker.calendar import Calendar
from worker.delivery.alarms import Alarms
from worker.delivery.history import Run, RunHistory
from worker.delivery.options import DeliveryOptions
from worker.delivery.replay import replay, replay_all
from worker.delivery.timers import Timers, cancel_waiting
from worker.errors import PpwError
from worker.process.runtime import Runtime
from worker.settings import Settings, get_settings
from worker.state import open_store

#: With the embedded memory broker a replay runs in the command's own process; it waits at most
#: this long for retries before leaving the run to ``ppw run`` (which picks unfinished runs up).
INLINE_PATIENCE = 120.0


@contextmanager
def open_history(settings: Settings | None = None) -> Iterator[tuple[RunHistory, str]]:
    """The run history of the configured state store, and the default connection id."""
    settings = settings or get_settings()
    store = open_store(settings.state_url)
    try:
        yield (
            RunHistory(store, retention=DeliveryOptions.from_settings(settings).retention),
            settings.connection_id,
        )
    finally:
        store.close()


def cancel_run(run_id: str, connection: str | None = None, settings: Settings | None = None) -> Run:
    """``ppw runs cancel``: end a waiting run (by id or prefix) as cancelled."""
    settings = settings or get_settings()
    options = DeliveryOptions.from_settings(settings)
    with open_history(settings) as (history, default_connection):
        conn = connection or default_connection
        run = history.resolve(conn, run_id)
        if run.status != "waiting":
            raise RunNotWaiting(
                f"run {run.id} is {run.status}, not waiting: only a waiting run can be cancelled"
            )
        return cancel_waiting(
            history,
            history.store,
            conn,
            run.id,
            "cancelled by an operator (ppw runs cancel)",
            lease_ttl=options.run_lease,
        )


def timers_report(
    settings: Settings | None = None,
    connection: str | None = None,
    *,
    rule: str | None = None,
    limit: int = 100,
) -> dict[str, list[dict[str, Any]]]:
    """``ppw timers list``: the date and "for" triggers pending, and the waiting runs, soonest first."""
    settings = settings or get_settings()
    store = open_store(settings.state_url)
    try:
        conn = connection or settings.connection_id
        alarms = Alarms(store, lambda: Calendar.from_settings(settings)).upcoming(conn, limit, rule=rule)
        history = RunHistory(store, retention=DeliveryOptions.from_settings(settings).retention)
        waiting: list[dict[str, Any]] = []
        for run_id, due in Timers(store).upcoming(conn, limit):
            run = history.find(conn, run_id)
            if run is None or (rule is not None and run.rule_id != rule):
                continue
            waiting.append(
                {
                    "run": run.id,
                    "rule": run.rule_id,
                    "rule_version": run.rule_version,
                    "resource": run.event.resource,
                    "record_id": run.event.record_id,
                    "step": run.waiting_step,
                    "due": due,
                }
            )
        return {"triggers": alarms, "waiting_runs": waiting}
    finally:
        store.close()


class RunNotWaiting(PpwError, ValueError):
    """``ppw runs cancel`` of a run that is not waiting (running, finished, dead)."""


class Replayer:
    """Requeues dead runs on the configured broker, or runs them here with the memory broker."""

    def __init__(self, runtime: Runtime, *, patience: float = INLINE_PATIENCE) -> None:
        self.runtime = runtime
        self.connection = runtime.app.settings.connection_id
        self.patience = patience

    @property
    def inline(self) -> bool:
        return self.runtime.embedded

    def _send(self, connection: str, run_id: str) -> None:
        if not self.inline:  # embedded: :meth:`_settle` runs it right here instead
            self.runtime.actors.send_run(connection, run_id)

    def replay(self, connection: str, run_id: str, *, with_current_rule: bool = False) -> Run:
        queued = replay(self.runtime.app, connection, run_id, self._send, with_current_rule=with_current_rule)
        return self._settle(queued)

    def replay_all(
        self, connection: str, *, rule: str | None = None, with_current_rule: bool = False
    ) -> list[Run]:
        queued = replay_all(
            self.runtime.app, connection, self._send, with_current_rule=with_current_rule, rule=rule
        )
        return [self._settle(run) for run in queued]

    def _settle(self, run: Run) -> Run:
        """Embedded: run it now, honouring retry delays for up to :attr:`patience` seconds."""
        if not self.inline:
            return run
        deadline = time.monotonic() + self.patience
        runner = self.runtime.actors.runner
        while True:
            outcome = runner.run(run.connection, run.id)
            latest = outcome.run or run
            if outcome.requeue_after is None or time.monotonic() + outcome.requeue_after > deadline:
                return latest
            time.sleep(outcome.requeue_after)

    def report(self, runs: list[Run]) -> list[str]:
        if not runs:
            return ["nothing to replay: the dead-letter store is empty"]
        lines = []
        for run in runs:
            if self.inline:
                detail = f"{run.status}" + (
                    f": {run.error}" if run.error and run.status != "succeeded" else ""
                )
            else:
                detail = "queued on the broker; follow it with `ppw runs show " + run.id[:12] + "`"
            lines.append(f"replayed {run.id[:12]} ({run.rule_id}, rule version {run.rule_version}): {detail}")
        return lines


@contextmanager
def open_replayer(settings: Settings | None = None) -> Iterator[Replayer]:
    """A :class:`Replayer` on the configured state store, rules and broker."""
    settings = settings or get_settings()
    with Runtime.create(settings) as runtime:
        yield Replayer(runtime)
