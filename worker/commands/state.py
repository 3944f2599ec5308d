"""``ppw state export|import``: back the state store up to one file, and restore it (either backend)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from worker.commands.common import ConnectionOpt, JsonOpt, fail, load_settings

app = typer.Typer(
    no_args_is_help=True,
    help="Back up and restore the state store: cursors, snapshots, ledger, runs, tokens, timers.",
)

FileArg = Annotated[Path, typer.Argument(help="The backup file (gzip'ed JSON lines).")]


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    root.add_typer(app, name="state")


@app.command("export")
def export(
    file: FileArg,
    all_connections: Annotated[
        bool, typer.Option("--all", help="Every connection in the state store, not just one.")
    ] = False,
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write every key of a connection (or of all of them, --all) to FILE, leases left out.

    A live scan: ppw may keep running. Written as FILE.tmp and renamed once complete.
    """
    # lazy: `ppw --help` imports every command module
    from worker.state import BackupError, StateError, export_state, open_store

    if all_connections and connection:
        raise fail("--all and --connection exclude each other")
    settings = load_settings()
    store = open_store(settings.state_url)
    try:
        chosen = None if all_connections else [connection or settings.connection_id]
        result = export_state(store, file, chosen)
    except (BackupError, StateError, OSError) as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({**result.header, "file": str(file), "skipped_leases": result.skipped_leases}))
        return
    typer.echo(
        f"exported {result.keys} keys ({result.lines} lines) of connection(s) "
        f"{', '.join(result.connections) or '(none)'} to {file}; {result.skipped_leases} leases left out"
    )


@app.command("import")
def import_(
    file: FileArg,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Delete the backup's connections' state first (stop ppw first)."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore FILE (from `ppw state export`, either backend) into the configured state store.

    Refuses a connection that already holds state unless --replace. The whole file is checked
    before anything is written.
    """
    # lazy: `ppw --help` imports every command module
    from worker.state import BackupError, StateError, import_state, open_store

    store = open_store(load_settings().state_url)
    try:
        result = import_state(store, file, replace=replace)
    except (BackupError, StateError) as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "file": str(file),
                    "connections": result.connections,
                    "keys": result.keys,
                    "lines": result.lines,
                    "deleted": result.deleted,
                    "exported_at": result.header.get("exported_at"),
                }
            )
        )
        return
    replaced = f" (replaced {result.deleted} keys)" if replace else ""
    typer.echo(
        f"imported {result.keys} keys of connection(s) {', '.join(result.connections) or '(none)'} "
        f"from {file}, exported {result.header.get('exported_at')}{replaced}"
    )
