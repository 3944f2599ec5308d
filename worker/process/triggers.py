"""Wiring webhooks and schedules into a running process (``ppw run``, ``ppw worker``, ``ppw scheduler``).

The process modules call two functions, one line each:

* :func:`webhook_routes_for` gives the ``/hooks/{name}`` routes for the process's HTTP server;
* :func:`start_schedules` starts the schedule runner beside the poll scheduler, firing only while
  that scheduler holds the leader lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from worker.delivery.timers import wake_now
from worker.settings import Settings
from worker.triggers.approvals import ApprovalDesk
from worker.triggers.options import TriggerOptions
from worker.triggers.schedules import ScheduleRunner
from worker.triggers.webhooks import EngineSource, WebhookIntake

if TYPE_CHECKING:
    from worker.process.runtime import Runtime

log = logging.getLogger(__name__)


def _engine_source(runtime: Runtime, engine: EngineSource | None) -> EngineSource | None:
    if engine is not None:
        return engine
    registry = runtime.registry
    if registry is None:
        return None
    return lambda: registry.engine


def webhook_intake(
    settings: Settings,
    runtime: Runtime,
    *,
    engine: EngineSource | None = None,
    options: TriggerOptions | None = None,
) -> WebhookIntake | None:
    """The intake for ``runtime`` (None when the process has no rules registry to read hooks from)."""
    source = _engine_source(runtime, engine)
    if source is None:
        return None
    return WebhookIntake(
        settings,
        runtime.app.store,
        runtime.actors.emit,
        source,
        events=runtime.app.events,
        options=options,
    )


def webhook_routes_for(settings: Settings, runtime: Runtime) -> Sequence[BaseRoute]:
    """``/hooks/{name}`` for the HTTP server of a process built on ``runtime``, and the approval
    endpoints (``/slack/interactivity``, ``/approvals/{token}``)."""
    intake = webhook_intake(settings, runtime)
    return [*(intake.routes() if intake is not None else ()), *approval_desk(settings, runtime).routes()]


def approval_desk(settings: Settings, runtime: Runtime) -> ApprovalDesk:
    """The approval endpoints of a process built on ``runtime``: a decision makes its waiting run
    due now in the timer index, which the scheduler's pump wakes."""
    app = runtime.app

    def wake(connection: str, run_id: str) -> bool:
        return wake_now(app.history, app.store, connection, run_id, lease_ttl=app.options.run_lease)

    return ApprovalDesk(settings, app.store, wake, http=app.services.http)


def start_schedules(
    settings: Settings,
    runtime: Runtime,
    leader: Callable[[], bool],
    *,
    engine: EngineSource | None = None,
    options: TriggerOptions | None = None,
) -> ScheduleRunner | None:
    """Start firing schedule rules while ``leader()`` holds (pass ``lambda: scheduler.is_leader``).

    Call ``.stop()`` on the result at shutdown, before the poll scheduler hands its lease over.
    """
    source = _engine_source(runtime, engine)
    if source is None:
        log.warning("no rules registry in this process: schedule triggers are not run")
        return None
    runner = ScheduleRunner(
        settings,
        runtime.app.store,
        runtime.actors.emit,
        source,
        lambda: runtime.app.services.pp(settings.connection_id),
        leader,
        options=options,
        events=runtime.app.events,
    )
    return runner.start()
