"""``ppw poll once|reconcile``, ``ppw status`` and ``ppw held list|show|release|discard``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from worker.commands.common import ConnectionOpt, JsonOpt, fail, load_settings
from worker.events import Event

poll_app = typer.Typer(no_args_is_help=True, help="Poll PracticePanther for changes by hand.")
held_app = typer.Typer(
    no_args_is_help=True, help="Batches held because a poll found more changes than PPW_FLOOD_LIMIT."
)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(poll_app, name="poll")
    app.add_typer(held_app, name="held")
    app.command("status")(status)


# ppw poll once -----------------------------------------------------------------------------------
@poll_app.command("once")
def poll_once(
    resource: Annotated[str, typer.Argument(help="Resource to poll: matters, tasks, time_entries ...")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the events a poll would emit; change nothing.")
    ] = False,
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Poll one resource now and print its events (with --dry-run: without emitting or saving)."""
    # lazy: `ppw --help` imports every command module
    from worker.practicepanther import resources
    from worker.practicepanther.errors import PracticePantherError
    from worker.process import poll_commands as operations
    from worker.state import StateError

    try:
        name = resources.get(resource).name
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    settings = load_settings()
    conn = connection or settings.connection_id
    progress = _Progress(name) if not as_json else None
    try:
        with (
            operations.open_state(settings) as store,
            operations.open_poller(settings, store, conn) as poller,
        ):
            if dry_run:
                result = poller.poll(name, dry_run=True, on_progress=progress)
                embedded = False
            else:
                with operations.open_emitter(settings, store) as emitter:
                    result = poller.poll(name, emitter.emit, on_progress=progress)
                    embedded = emitter.embedded
    except (PracticePantherError, StateError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        if progress is not None:
            progress.done()
    if as_json:
        typer.echo(json.dumps(_result_dict(result), indent=2, default=str))
        return
    _print_result(result, embedded=embedded)


# ppw poll reconcile -------------------------------------------------------------------------------
@poll_app.command("reconcile")
def poll_reconcile(
    resource: Annotated[str, typer.Argument(help="Resource to reconcile: matters, tasks, notes ...")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the deletions a reconcile would emit; change nothing.")
    ] = False,
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find deleted records now: list every id, confirm the missing ones by GET, fire `deleted`."""
    # lazy: `ppw --help` imports every command module
    from worker.practicepanther import resources
    from worker.practicepanther.errors import PracticePantherError
    from worker.process import poll_commands as operations
    from worker.state import StateError

    try:
        name = resources.get(resource).name
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    settings = load_settings()
    conn = connection or settings.connection_id
    embedded = False
    try:
        with (
            operations.open_state(settings) as store,
            operations.open_reconciler(settings, store, conn) as reconciler,
        ):
            if dry_run:
                result = reconciler.reconcile(name, dry_run=True)
            else:
                with operations.open_emitter(settings, store) as emitter:
                    result = reconciler.reconcile(name, emitter.emit)
                    embedded = emitter.embedded
    except (PracticePantherError, StateError, ValueError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        data = {k: v for k, v in result.__dict__.items() if k not in ("events", "held")}
        data["held_batch"] = result.held.id if result.held else None
        data["events"] = [e.model_dump(mode="json") for e in result.events]
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    _print_reconcile(result, embedded=embedded)


def _print_reconcile(result: Any, *, embedded: bool) -> None:
    name = result.resource
    if result.outcome == "unprimed":
        typer.echo(f"{name}: not primed yet (poll it first); nothing is tracked to reconcile")
        return
    if result.outcome == "busy":
        typer.echo(f"{name}: another reconcile is in flight; nothing done")
        return
    for event in result.events:
        typer.echo(_event_line(event))
    listing = "whole records ($select refused)" if result.select_refused else "ids"
    summary = (
        f"{name}: {result.tracked} tracked, {result.listed} listed ({listing}), {result.missing} missing, "
        f"{result.requests} request(s)"
    )
    if result.outcome == "suspect":
        typer.echo(f"{summary}; the missing records still answer: listing not believed, nothing fired")
    elif result.outcome == "held":
        where = f"held as batch {result.held.id}" if result.held else "would be held (over PPW_FLOOD_LIMIT)"
        typer.echo(f"{summary}; {len(result.events)} deletion(s) {where}; see `ppw held list`")
    else:
        verb = "would emit" if result.dry_run else "emitted"
        typer.echo(f"{summary}; {len(result.events)} deletion(s) {verb}")
        if embedded and result.events and not result.dry_run:
            typer.echo("the broker is embedded (memory://): `ppw run` dispatches these events")


class _Progress:
    """Records read so far, on one self-overwriting line of stderr (priming can take a while)."""

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self.shown = False

    def __call__(self, count: int) -> None:
        if sys.stderr.isatty():
            typer.echo(f"\rreading {self.resource}: {count} records", err=True, nl=False)
            self.shown = True

    def done(self) -> None:
        if self.shown:
            typer.echo("", err=True)


def _result_dict(result: Any) -> dict[str, Any]:
    return {
        "resource": result.resource,
        "outcome": result.outcome,
        "dry_run": result.dry_run,
        "records": result.records,
        "requests": result.requests,
        "query": result.query,
        "cursor": result.cursor.position.isoformat() if result.cursor and result.cursor.position else None,
        "held_batch": result.held.id if result.held else None,
        "events": [e.model_dump(mode="json") for e in result.events],
    }


def _print_result(result: Any, *, embedded: bool) -> None:
    verb = "would emit" if result.dry_run else "emitted"
    if result.outcome == "busy":
        typer.echo(f"{result.resource}: another poll is in flight; nothing done")
        return
    if result.outcome == "primed":
        prefix = "would prime" if result.dry_run else "primed"
        typer.echo(
            f"{result.resource}: {prefix} {result.records} records (first poll: snapshots only, no events)"
        )
        return
    for event in result.events:
        typer.echo(_event_line(event))
        for field, change in event.changes.items():
            old = _short(change.old) if change.old_known else "?"  # unknown, not null
            typer.echo(f"    {field}: {old} -> {_short(change.new)}")
    summary = f"{result.resource}: {len(result.events)} event(s) from {result.records} record(s)"
    if result.outcome == "held":
        where = f"held as batch {result.held.id}" if result.held else "would be held (over PPW_FLOOD_LIMIT)"
        typer.echo(f"{summary}, {where}; see `ppw held list`")
    else:
        typer.echo(f"{summary} {verb} ({result.requests} request(s), {result.query})")
        if embedded and result.events and not result.dry_run:
            typer.echo("the broker is embedded (memory://): `ppw run` dispatches these events")


def _event_line(event: Event) -> str:
    name = event.record.get("display_name") or event.record.get("name") or event.record.get("subject") or ""
    origin = " [own write]" if event.origin == "ppw" else ""
    return f"{event.type:<8} {event.resource} {event.record_id} {_short(name)}{origin}"


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, dict) and "id" in value:
        value = value.get("display_name") or value["id"]
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ppw status ---------------------------------------------------------------------------------------
def status(connection: ConnectionOpt = None, as_json: JsonOpt = False) -> None:
    """Every resource's cursor and lag, its last poll, held batches, state size by kind and queue depths."""
    # lazy: `ppw --help` imports every command module
    from worker.polling import held
    from worker.polling.status import humanize_seconds
    from worker.process import poll_commands as operations
    from worker.state import StateError

    settings = load_settings()
    conn = connection or settings.connection_id
    try:
        with operations.open_state(settings) as store:
            report = operations.status_report(settings, store, conn)
            batches = held.list_held(store, conn)
    except StateError as exc:
        raise fail(str(exc)) from None
    if as_json:
        data = report.to_dict()
        data["held"] = [b.__dict__ for b in batches]
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    typer.echo(f"connection {report.connection}   state {report.state}")
    if not report.resources:
        typer.echo("no resources polled yet (set PPW_POLL_RESOURCES or write a rule that watches one)")
    else:
        header = (
            f"{'RESOURCE':<18} {'CURSOR':<26} {'LAG':>8}  {'LAST POLL':<22} {'RESULT':<7} {'EVENTS':>6}  HELD"
        )
        typer.echo(header)
        for row in report.resources:
            cursor = (
                row.cursor[:19] + "Z" if row.cursor else ("(priming)" if row.result else "(never polled)")
            )
            last = _ago(row.last_poll)
            events = "-" if row.events is None else str(row.events)
            typer.echo(
                f"{row.resource:<18} {cursor:<26} {humanize_seconds(row.lag_seconds):>8}  {last:<22} "
                f"{row.result or '-':<7} {events:>6}  {row.held_batches}"
            )
            if row.error:
                typer.echo(f"    last error: {row.error}")
            if row.reconciled_at:
                typer.echo(
                    f"    last reconcile {_ago(row.reconciled_at)}: {row.reconcile_result}, "
                    f"{row.deleted or 0} deleted"
                )
    if batches:
        typer.echo(f"\n{len(batches)} held batch(es): nothing in them fires until released")
        for batch in batches:
            typer.echo(f"  {batch.id}  {batch.resource}  {batch.count} events  held {batch.held_at[:19]}Z")
        typer.echo("  `ppw held release <id>` or `ppw held discard <id>`")
    if report.usage:
        total_keys = sum(u.keys for u in report.usage)
        sizes = [u.bytes for u in report.usage if u.bytes is not None]
        size = f", {_size(sum(sizes))}" if sizes else ""
        typer.echo(f"\nstate: {total_keys} keys{size}")
        typer.echo(f"  {'KIND':<20} {'KEYS':>8} {'BYTES':>10}")
        for u in report.usage:
            typer.echo(f"  {u.kind:<20} {u.keys:>8} {'-' if u.bytes is None else _size(u.bytes):>10}")
    if report.embedded_broker:
        typer.echo("\nqueues: embedded broker (memory://), depths are only known inside `ppw run`")
    elif report.queues:
        depths = ", ".join(f"{name} {'?' if n is None else n}" for name, n in report.queues.items())
        typer.echo(f"\nqueues: {depths}")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _ago(stamp: str | None) -> str:
    if not stamp:
        return "-"
    when = datetime.fromisoformat(stamp)
    seconds = (datetime.now(UTC) - when).total_seconds()
    # lazy: `ppw --help` imports every command module
    from worker.polling.status import humanize_seconds

    return f"{humanize_seconds(seconds)} ago"


# ppw held ------------------------------------------------------------------------------------------
@held_app.command("list")
def held_list(
    resource: Annotated[str | None, typer.Option("--resource", help="Only batches of this resource.")] = None,
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List held batches, oldest first."""
    # lazy: `ppw --help` imports every command module
    from worker.polling import held
    from worker.practicepanther import resources
    from worker.process import poll_commands as operations

    if resource is not None:
        resource = resources.resolve_name(resource) or resource
    settings = load_settings()
    conn = connection or settings.connection_id
    with operations.open_state(settings) as store:
        batches = held.list_held(store, conn, resource)
    if as_json:
        typer.echo(json.dumps([b.__dict__ for b in batches], indent=2))
        return
    if not batches:
        typer.echo("no held batches")
        return
    for batch in batches:
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(batch.types.items()))
        typer.echo(
            f"{batch.id}  {batch.resource}  {batch.count} events ({kinds})  held {batch.held_at[:19]}Z"
        )
        typer.echo(f"    {batch.reason}")


@held_app.command("show")
def held_show(
    batch_id: Annotated[str, typer.Argument(help="Batch id, as `ppw held list` shows it.")],
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the events of a held batch."""
    # lazy: `ppw --help` imports every command module
    from worker.polling import held
    from worker.process import poll_commands as operations

    settings = load_settings()
    conn = connection or settings.connection_id
    with operations.open_state(settings) as store:
        try:
            events = held.held_events(store, conn, batch_id)
        except held.HeldBatchNotFound as exc:
            raise fail(str(exc.args[0])) from None
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
        return
    for event in events:
        typer.echo(_event_line(event))


@held_app.command("release")
def held_release(
    batch_id: Annotated[str, typer.Argument(help="Batch id, as `ppw held list` shows it.")],
    connection: ConnectionOpt = None,
) -> None:
    """Fire a held batch: its events go to dispatch and the rules run."""
    # lazy: `ppw --help` imports every command module
    from worker.polling import held
    from worker.process import poll_commands as operations

    settings = load_settings()
    conn = connection or settings.connection_id
    with operations.open_state(settings) as store:
        try:
            held.get_held(store, conn, batch_id)
            with operations.open_emitter(settings, store) as emitter:
                count = held.release(store, conn, batch_id, emitter.emit)
                embedded = emitter.embedded
        except held.HeldBatchNotFound as exc:
            raise fail(str(exc.args[0])) from None
    typer.echo(f"released {batch_id}: {count} event(s) sent to dispatch")
    if embedded:
        typer.echo("the broker is embedded (memory://): `ppw run` dispatches these events")


@held_app.command("discard")
def held_discard(
    batch_id: Annotated[str, typer.Argument(help="Batch id, as `ppw held list` shows it.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    connection: ConnectionOpt = None,
) -> None:
    """Drop a held batch: none of its changes will fire any rule."""
    # lazy: `ppw --help` imports every command module
    from worker.polling import held
    from worker.process import poll_commands as operations

    settings = load_settings()
    conn = connection or settings.connection_id
    with operations.open_state(settings) as store:
        try:
            batch = held.get_held(store, conn, batch_id)
            if not yes:
                typer.confirm(
                    f"discard {batch.count} event(s) of {batch.resource}? No rule will see them", abort=True
                )
            count = held.discard(store, conn, batch_id)
        except held.HeldBatchNotFound as exc:
            raise fail(str(exc.args[0])) from None
    typer.echo(f"discarded {batch_id}: {count} event(s) dropped")
