"""``ppw worker`` (Dramatiq workers), ``ppw scheduler`` (polls and schedules) and ``ppw run`` (all in one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from worker.commands.common import fail, load_settings

ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", min=1, help="Worker threads (default PPW_WORKER_THREADS).")
]
PortOpt = Annotated[
    int | None,
    typer.Option("--http-port", min=0, help="Port for /healthz, /readyz, /metrics (default PPW_HTTP_PORT)."),
]
NoHttpOpt = Annotated[bool, typer.Option("--no-http", help="Do not serve /healthz, /readyz, /metrics.")]


@contextmanager
def _refusals() -> Iterator[None]:
    """A process that refuses to start says why on stderr and exits 2, without a traceback; the
    firm calendar's settings (PPW_HOLIDAYS, PPW_CLOSURES, PPW_CLOSURES_FILE) are checked first."""
    # lazy: `ppw --help` imports every command module
    from worker.calendar import Calendar, CalendarError
    from worker.process.run import BrokenRules, NeedsSharedBroker
    from worker.state.durability import UnsafeStateStore

    try:
        Calendar.from_settings(load_settings())
        yield
    except (NeedsSharedBroker, UnsafeStateStore, BrokenRules, CalendarError) as exc:
        raise fail(str(exc), code=2) from None


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("worker")(worker)
    app.command("scheduler")(scheduler)
    app.command("run")(run)


def worker(
    threads: ThreadsOpt = None,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", "-q", help="Only this stage: poll, dispatch or run (repeatable; default all)."
        ),
    ] = None,
    http_port: PortOpt = None,
    no_http: NoHttpOpt = False,
) -> None:
    """Run Dramatiq workers for the poll, dispatch and run queues of a Redis or RabbitMQ broker.

    Scale by starting more of them (on any number of hosts). SIGTERM stops gracefully: running steps
    get PPW_SHUTDOWN_GRACE seconds to finish, the rest go back to the broker.
    """
    # lazy: `ppw --help` imports every command module
    from worker.process.run import ProcessOptions, run_worker
    from worker.process.runtime import STAGES

    stages = tuple(queue) if queue else STAGES
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise fail(f"unknown stage {', '.join(unknown)}; use {', '.join(STAGES)}", code=2)
    with _refusals():
        run_worker(
            load_settings(),
            ProcessOptions(threads=threads, http=not no_http, http_port=http_port, stages=stages),
        )


def scheduler(http_port: PortOpt = None, no_http: NoHttpOpt = False) -> None:
    """Submit polls of every watched resource every PPW_POLL_INTERVAL and fire schedule triggers.

    Run one, or two for failover: a lease in the state store makes exactly one the leader, and
    another takes over within two intervals if it dies. Needs a Redis or RabbitMQ broker.
    """
    # lazy: `ppw --help` imports every command module
    from worker.process.run import ProcessOptions, run_scheduler

    with _refusals():
        run_scheduler(load_settings(), ProcessOptions(http=not no_http, http_port=http_port))


def run(threads: ThreadsOpt = None, http_port: PortOpt = None, no_http: NoHttpOpt = False) -> None:
    """Run everything in one process: poll scheduler, workers, health and metrics (and the web
    console when PPW_CONSOLE_ENABLED=true).

    With no PPW_BROKER_URL / PPW_STATE_URL it runs embedded (in-process broker, SQLite under ./.ppw)
    and says so. SIGTERM or Ctrl-C: polling stops, running steps finish (up to PPW_SHUTDOWN_GRACE).
    """
    # lazy: `ppw --help` imports every command module
    from worker.console.auth import ConsoleConfigError
    from worker.console.server import attach
    from worker.process.run import ProcessOptions, run_all

    with _refusals():
        try:
            run_all(
                load_settings(),
                ProcessOptions(threads=threads, http=not no_http, http_port=http_port),
                say=lambda line: typer.echo(line, err=True),
                attach=attach,
            )
        except ConsoleConfigError as exc:
            raise fail(f"PPW_CONSOLE_ENABLED is set but {exc}", code=2) from None
