"""``ppw runs list|show|cancel`` and ``ppw dlq list|replay``: what the rules did, and what needs a person."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from worker.commands.common import ConnectionOpt, JsonOpt, fail
from worker.delivery.history import STATUSES

runs_app = typer.Typer(no_args_is_help=True, help="Run history: what each rule run saw, sent and got back.")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: runs that need a person, and replaying them.")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(runs_app, name="runs")
    app.add_typer(dlq_app, name="dlq")


@runs_app.command("list")
def runs_list(
    rule: Annotated[str | None, typer.Option("--rule", help="Only runs of this rule id.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help=f"Only runs with this status ({', '.join(STATUSES)}).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only runs created since: 30m, 2h, 7d or an ISO date.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 50,
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List recent rule runs, newest first."""
    # lazy: `ppw --help` imports every command module
    from worker.delivery import report
    from worker.process import run_commands as operations

    if status is not None and status not in STATUSES:
        raise fail(f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
    try:
        since_ts = report.parse_since(since) if since else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    with operations.open_history() as (history, default_connection):
        runs = history.recent(
            connection or default_connection, rule=rule, status=status, since=since_ts, limit=limit
        )
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json", exclude={"rule_snapshot"}) for r in runs], indent=2))
    else:
        typer.echo(report.runs_table(runs))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[
        str, typer.Argument(help="Run id (or an unambiguous prefix, as `ppw runs list` shows).")
    ],
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one run: rule version, conditions, each step's request and response, errors."""
    # lazy: `ppw --help` imports every command module
    from worker.delivery import report
    from worker.delivery.history import RunNotFound
    from worker.process import run_commands as operations

    with operations.open_history() as (history, default_connection):
        try:
            run = history.resolve(connection or default_connection, run_id)
        except RunNotFound as exc:
            raise fail(str(exc)) from None
    if as_json:
        typer.echo(run.model_dump_json(indent=2))
    else:
        typer.echo(report.run_detail(run))


@runs_app.command("cancel")
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="Id (or prefix) of a waiting run, as `ppw runs list` shows.")],
    connection: ConnectionOpt = None,
) -> None:
    """Cancel a waiting run: it never wakes, and its history says who ended it."""
    # lazy: `ppw --help` imports every command module
    from worker.delivery.history import RunNotFound
    from worker.delivery.timers import RunBusy
    from worker.process import run_commands as operations

    try:
        run = operations.cancel_run(run_id, connection)
    except (RunNotFound, RunBusy, operations.RunNotWaiting) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"cancelled run {run.id} ({run.rule_id}); it was waiting at step {run.waiting_step or '-'}")


@dlq_app.command("list")
def dlq_list(
    rule: Annotated[str | None, typer.Option("--rule", help="Only dead runs of this rule id.")] = None,
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List dead-lettered runs (oldest first) with the step that failed and why."""
    # lazy: `ppw --help` imports every command module
    from worker.delivery import report
    from worker.process import run_commands as operations

    with operations.open_history() as (history, default_connection):
        # lazy: `ppw --help` imports every command module
        from worker.delivery.deadletters import DeadLetters

        runs = DeadLetters(history.store, history).entries(connection or default_connection, rule=rule)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json", exclude={"rule_snapshot"}) for r in runs], indent=2))
    elif not runs:
        typer.echo("the dead-letter store is empty")
    else:
        typer.echo(report.runs_table(runs, error_width=90))
        typer.echo(
            f"\n{len(runs)} dead run(s); `ppw runs show RUN` for details, `ppw dlq replay RUN` to retry."
        )


@dlq_app.command("replay")
def dlq_replay(
    run_id: Annotated[str | None, typer.Argument(help="The dead run to replay (id or prefix).")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead run.")] = False,
    rule: Annotated[str | None, typer.Option("--rule", help="With --all: only runs of this rule.")] = None,
    with_current_rule: Annotated[
        bool,
        typer.Option(
            "--with-current-rule",
            help="Run the rule as loaded now (after fixing it) instead of the version the run started with.",
        ),
    ] = False,
    connection: ConnectionOpt = None,
) -> None:
    """Replay dead runs from the step that failed (finished steps are not repeated)."""
    # lazy: `ppw --help` imports every command module
    from worker.delivery.history import RunNotFound
    from worker.delivery.replay import ReplayError
    from worker.process import run_commands as operations

    if (run_id is None) == (not replay_all):
        raise fail("give a RUN_ID or --all (not both)")
    try:
        with operations.open_replayer() as replayer:
            conn = connection or replayer.connection
            if replay_all:
                runs = replayer.replay_all(conn, rule=rule, with_current_rule=with_current_rule)
            else:
                assert run_id is not None
                runs = [replayer.replay(conn, run_id, with_current_rule=with_current_rule)]
            for line in replayer.report(runs):
                typer.echo(line)
    except (RunNotFound, ReplayError) as exc:
        raise fail(str(exc)) from None
