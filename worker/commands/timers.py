"""``ppw timers list``: what is due to happen later (date and "for" triggers, waiting runs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from worker.commands.common import ConnectionOpt, JsonOpt

timers_app = typer.Typer(
    no_args_is_help=True, help="Date triggers, durations and waiting runs still to come."
)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(timers_app, name="timers")


@timers_app.command("list")
def timers_list(
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule's.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many of each.")] = 50,
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the date and "for" triggers pending (by rule and record) and the waiting runs, soonest first."""
    # lazy: `ppw --help` imports every command module
    from worker.process import run_commands as operations

    report = operations.timers_report(connection=connection, rule=rule, limit=limit)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"date and duration triggers pending: {len(report['triggers'])}")
    for item in report["triggers"]:
        typer.echo(
            f"  {_when(item['due'])}  {item.get('rule')}  {item.get('resource')} {item.get('record_id')}"
        )
    typer.echo(f"waiting runs: {len(report['waiting_runs'])}")
    for item in report["waiting_runs"]:
        typer.echo(
            f"  {_when(item['due'])}  {item['rule']} (version {item['rule_version'][:8]})  "
            f"{item['resource']} {item['record_id']}  run {item['run'][:12]} at step {item['step']}"
        )


def _when(moment: Any) -> str:
    return datetime.fromtimestamp(float(moment), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
