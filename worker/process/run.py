"""The long-running processes: ``ppw worker`` (Dramatiq workers) and ``ppw run`` (everything).

Both read top to bottom the same way: logging and Sentry first (Sentry must see the broker being
created), then the runtime (state, rules with hot reload, broker, actors), the workers, for
``ppw run`` the poll scheduler, and the health/metrics server. They then wait for SIGTERM or
SIGINT and stop in reverse: polling stops first, running steps get ``PPW_SHUTDOWN_GRACE`` seconds
(counted from the signal) to finish, messages not started go back to the broker (Redis/RabbitMQ)
or stay recorded in the state store (embedded: picked up again on the next start).

Every step of the stop is bounded, so the process exits within ``PPW_SHUTDOWN_GRACE`` plus a few
seconds whatever it was doing: what is still running then (a step, a poll job waiting on a locked
state store) runs on a daemon thread and is abandoned with a log line; a run cut short resumes from
its ledger when its message is delivered again (embedded: on the next start).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from types import FrameType

from worker.delivery import retention
from worker.delivery.alarms import AlarmPump
from worker.delivery.timers import TimerPump
from worker.errors import PpwError
from worker.observability import configure_logging, init_sentry
from worker.polling.scheduler import PollScheduler
from worker.polling.status import resource_statuses
from worker.practicepanther import client as pp_client
from worker.practicepanther.tokens import TokenStore
from worker.process import health
from worker.process.broker import describe
from worker.process.health import HealthServer, RulesState
from worker.process.runtime import STAGES, Runtime
from worker.process.triggers import start_schedules, webhook_routes_for
from worker.rules.customlabels import CustomFieldsWatch, read_report
from worker.rules.engine import rules_by_resource
from worker.rules.ruleset import RuleSet
from worker.settings import EMBEDDED_BROKER_URL, EMBEDDED_STATE_URL, Settings

log = logging.getLogger(__name__)

Say = Callable[[str], None]
#: ``attach(settings, runtime)``: something ``ppw run`` serves beside its workers (the console,
#: from a layer above this one); returns how to stop it, or None when it is off.
Attach = Callable[[Settings, Runtime], Callable[[], None] | None]

#: Longest wait for the poll scheduler and the schedule triggers to stop (their jobs are short).
POLLING_STOP_TIMEOUT = 2.0
#: Longest wait for the health/metrics server to stop.
HTTP_STOP_TIMEOUT = 2.0
#: Seconds between two looks for waiting runs that are due (a wait ends within about this late;
#: an idle look is one sorted-set read, so twice a second costs nothing).
TIMER_TICK = 0.5
#: Seconds between two looks for date rules whose already tracked records need their alarms.
ALARM_SYNC = 60.0


class NeedsSharedBroker(PpwError, ValueError):
    """``ppw worker`` with the in-process memory broker: nothing else could feed it."""


class BrokenRules(PpwError, ValueError):
    """``PPW_STRICT_RULES``: a rule did not load, and this deployment wants that to fail the start."""


@dataclass(frozen=True)
class ProcessOptions:
    """What the command line can override.

    Parameters
    ----------
    threads:
        Worker threads (default ``PPW_WORKER_THREADS``).
    http:
        Serve /healthz, /readyz, /metrics.
    http_port:
        Their port (default ``PPW_HTTP_PORT``; 0 picks a free one).
    stages:
        With ``ppw worker``, only these queues (``poll``, ``dispatch``, ``run``).
    """

    threads: int | None = None
    http: bool = True
    http_port: int | None = None
    stages: tuple[str, ...] = STAGES


def embedded_banner(settings: Settings) -> str | None:
    """What ``ppw run`` says when it runs on the embedded defaults, or None for a deployment."""
    parts = []
    if settings.broker_url == EMBEDDED_BROKER_URL:
        parts.append("the in-process memory broker")
    if settings.state_url == EMBEDDED_STATE_URL:
        parts.append(f"SQLite state in {EMBEDDED_STATE_URL.removeprefix('sqlite:///')}")
    if not parts:
        return None
    return (
        "ppw run: embedded mode, using " + " and ".join(parts) + ". Fine for one machine; for a "
        "deployment set PPW_BROKER_URL (redis:// or amqp://) and PPW_STATE_URL (redis://)."
    )


@contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (only the main thread can install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _observability(settings: Settings) -> None:
    configure_logging(settings)
    init_sentry(settings)
    if api_metrics not in pp_client.response_hooks:
        pp_client.response_hooks.append(api_metrics)


def api_metrics(method: str, route: str, status: int, seconds: float) -> None:
    """``ppw_api_calls_total`` and ``ppw_api_latency_seconds`` for one PracticePanther exchange
    (a :data:`~worker.practicepanther.client.response_hooks` entry; status 0: no response)."""
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    metrics.API_CALLS.labels(method, str(status) if status else "error").inc()
    metrics.API_LATENCY.labels(method).observe(seconds)


def _health(
    settings: Settings, runtime: Runtime, options: ProcessOptions, *, polls: bool
) -> HealthServer | None:
    """The /healthz, /readyz, /metrics server with checks for what this process depends on."""
    if not options.http:
        return None
    store, registry = runtime.app.store, runtime.registry
    key = settings.token_encryption_key.get_secret_value() if settings.token_encryption_key else None
    tokens = TokenStore(store, settings.connection_id, key)

    def expires_at() -> float | None:
        loaded = tokens.load()
        return loaded.expires_at.timestamp() if loaded is not None else None

    checks = {
        "broker": health.broker_check(runtime.broker),
        "state": health.state_check(store),
        "token": health.token_check(expires_at),
    }
    if registry is not None:
        checks["rules"] = health.rules_check(lambda: _rules_state(registry.ruleset))
        checks["custom_fields"] = health.custom_fields_check(
            lambda: read_report(store, settings.connection_id)
        )
    if polls:
        checks["polls"] = health.polls_check(lambda: _last_polls(settings, runtime), settings.poll_interval)
        checks["timers"] = health.timers_check(lambda: runtime.app.timers.oldest_due(settings.connection_id))
    routes = webhook_routes_for(settings, runtime)  # POST /hooks/<name> (inbound webhook triggers)
    server = health.HealthServer(settings, checks, routes=routes, port=options.http_port)
    server.start()
    log.info("health and metrics on %s (/healthz, /readyz, /metrics)", server.url)
    return server


def _rules_state(ruleset: RuleSet) -> RulesState:
    return RulesState(len(ruleset), [entry.summary() for entry in ruleset.broken], len(ruleset.files))


def _strict_rules(settings: Settings, runtime: Runtime) -> None:
    """With ``PPW_STRICT_RULES``, refuse to start when any rule is broken (before any work starts)."""
    registry = runtime.registry
    if not settings.strict_rules or registry is None or not registry.ruleset.broken:
        return
    broken = registry.ruleset.broken
    raise BrokenRules(
        f"PPW_STRICT_RULES is set and {len(broken)} rule(s) in {settings.rules_dir} did not load: "
        + "; ".join(entry.summary() for entry in broken)
        + ". Fix them (`ppw rules check` lists every error) or unset PPW_STRICT_RULES to run the others."
    )


def _rules_line(runtime: Runtime) -> str:
    """``3 rule(s)``, and how many are broken, for the line ``ppw run`` prints at start."""
    registry = runtime.registry
    if registry is None:
        return "0 rule(s)"
    ruleset = registry.ruleset
    broken = f" ({len(ruleset.broken)} broken: see the errors above)" if ruleset.broken else ""
    return f"{len(ruleset)} rule(s){broken}"


def _last_polls(settings: Settings, runtime: Runtime) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for row in resource_statuses(runtime.app.store, settings.connection_id):
        out[row.resource] = datetime.fromisoformat(row.last_success).timestamp() if row.last_success else None
    return out


def run_worker(
    settings: Settings, options: ProcessOptions = ProcessOptions(), *, stop: threading.Event | None = None
) -> None:
    """``ppw worker``: Dramatiq workers on a shared broker until SIGTERM/SIGINT (or ``stop``)."""
    if settings.uses_embedded_broker:
        raise NeedsSharedBroker(
            "ppw worker needs a shared broker: set PPW_BROKER_URL to redis://... or amqp://... "
            "(with the embedded memory broker use `ppw run`, which runs workers in its own process)"
        )
    _observability(settings)
    stop = stop or threading.Event()
    with _signals(stop), Runtime.create(settings, watch_rules=True) as runtime:
        _strict_rules(settings, runtime)
        runtime.start_workers(options.threads, stages=options.stages)
        server = _health(settings, runtime, options, polls=False)
        log.info(
            "ppw worker: %d thread(s) on %s, queues %s",
            options.threads or settings.worker_threads,
            describe(settings.broker_url),
            ", ".join(getattr(runtime.actors.queues, stage) for stage in options.stages),
        )
        stopped_at: float | None = None
        try:
            stop.wait()
            stopped_at = time.monotonic()
        finally:
            _shutdown(runtime, server, settings, since=stopped_at)


def run_scheduler(
    settings: Settings, options: ProcessOptions = ProcessOptions(), *, stop: threading.Event | None = None
) -> None:
    """``ppw scheduler``: submit polls and fire schedule triggers while this process leads.

    Several may run for availability; a lease in the state store makes one the leader.
    """
    if settings.uses_embedded_broker:
        raise NeedsSharedBroker(
            "PPW_BROKER_URL is memory:// (embedded): its queue lives inside one process, so a separate "
            "scheduler cannot reach the workers. Use `ppw run` (scheduler and workers together) or set "
            "PPW_BROKER_URL to redis:// or amqp://"
        )
    _observability(settings)
    stop = stop or threading.Event()
    with _signals(stop), Runtime.create(settings, watch_rules=True) as runtime:
        _strict_rules(settings, runtime)
        with _scheduling(settings, runtime):
            server = _health(settings, runtime, options, polls=True)
            log.info("ppw scheduler: polling every %gs", settings.poll_interval)
            try:
                stop.wait()
            finally:
                if server is not None:
                    with suppress(Exception):
                        server.stop(HTTP_STOP_TIMEOUT)


def run_all(
    settings: Settings,
    options: ProcessOptions = ProcessOptions(),
    *,
    stop: threading.Event | None = None,
    say: Say = print,
    attach: Attach | None = None,
) -> None:
    """``ppw run``: scheduler, workers and the health/metrics server in one process (and whatever
    ``attach`` starts over the same runtime: ``ppw run`` passes the console's)."""
    _observability(settings)
    banner = embedded_banner(settings)
    if banner:
        say(banner)
    stop = stop or threading.Event()
    with _signals(stop), Runtime.create(settings, watch_rules=True) as runtime:
        _strict_rules(settings, runtime)
        runtime.start_workers(options.threads)
        server: HealthServer | None = None
        stopped_at: float | None = None
        detach: Callable[[], None] | None = None
        try:
            with _scheduling(settings, runtime):  # leaving it stops polling first
                server = _health(settings, runtime, options, polls=True)
                detach = attach(settings, runtime) if attach is not None else None
                say(
                    f"ppw run: {_rules_line(runtime)}, polling every "
                    f"{settings.poll_interval:g}s, {options.threads or settings.worker_threads} worker "
                    "thread(s); Ctrl-C to stop"
                )
                stop.wait()
                stopped_at = time.monotonic()
        finally:
            if detach is not None:
                with suppress(Exception):
                    detach()
            _shutdown(runtime, server, settings, since=stopped_at)


@contextmanager
def _scheduling(settings: Settings, runtime: Runtime) -> Iterator[None]:
    """The poll scheduler (leader-elected) and the schedule triggers that run while it leads."""
    scheduler = poll_scheduler(settings, runtime)
    scheduler.start()
    schedules = start_schedules(settings, runtime, lambda: scheduler.is_leader)
    try:
        yield
    finally:
        # Bounded: a job still waiting on the state store is abandoned (and logged), not awaited.
        deadline = time.monotonic() + POLLING_STOP_TIMEOUT
        if schedules is not None:
            schedules.stop(timeout=POLLING_STOP_TIMEOUT)
        scheduler.shutdown(timeout=max(deadline - time.monotonic(), 0.0))


def poll_scheduler(settings: Settings, runtime: Runtime) -> PollScheduler:
    """The scheduler's jobs for ``runtime``: polls of the watched resources, their reconciles, the
    wake-up of waiting runs and the ringing of date and "for" triggers (twice a second), the
    alarms of records tracked before their date rule (every minute), the pruning of the state
    store's indexes (every five minutes, :mod:`worker.delivery.retention`) and the refresh of the
    custom field definitions (``ppw run``, ``ppw scheduler`` and the demo)."""
    registry = runtime.registry

    def watched() -> list[str]:
        return sorted(rules_by_resource(registry.engine)) if registry is not None else []

    scheduler = PollScheduler.from_settings(
        settings,
        runtime.app.store,
        runtime.actors.send_poll,
        watched,
        reconcile=runtime.actors.send_reconcile,
    )
    if registry is not None:
        watch = CustomFieldsWatch(
            runtime.app.store,
            settings.connection_id,
            lambda: runtime.app.services.pp(settings.connection_id),
            lambda: registry.ruleset.rules,
        )
        scheduler.every("custom-fields", settings.custom_fields_refresh, watch.refresh)
    pump = TimerPump(runtime.app.store, settings.connection_id, runtime.actors.send_runs)
    scheduler.every("timers", TIMER_TICK, pump.tick)
    alarms = AlarmPump(
        runtime.app.alarms, settings.connection_id, runtime.actors.emit, runtime.app.rules.versions
    )
    scheduler.every("alarms", TIMER_TICK, alarms.tick)
    scheduler.every("alarm-sync", ALARM_SYNC, alarms.sync)
    scheduler.every(
        "prune", retention.PRUNE_INTERVAL, lambda: retention.prune(runtime.app, settings.connection_id)
    )
    return scheduler


def _shutdown(
    runtime: Runtime, server: HealthServer | None, settings: Settings, *, since: float | None = None
) -> None:
    """Stop the workers and the HTTP server; running steps get what is left of the grace ``since``
    the stop was asked for (the signal): they kept running while polling stopped."""
    started = time.monotonic()
    grace = settings.shutdown_grace
    if since is not None:
        grace = max(grace - (started - since), 0.0)
    runtime.stop(grace)
    if server is not None:
        with suppress(Exception):
            server.stop(HTTP_STOP_TIMEOUT)
    log.info("stopped in %.1fs", time.monotonic() - (since if since is not None else started))
