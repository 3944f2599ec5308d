"""``ppw console`` (serve the web console) and ``ppw console hash-password``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from worker.commands.common import fail, load_settings

app = typer.Typer(
    help="The web console: runs, dead letters, held batches, waiting runs (docs/console.md).",
    invoke_without_command=True,
)


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    root.add_typer(app, name="console")


@app.callback()
def console(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option("--port", min=0, help="Port (default PPW_CONSOLE_PORT, 9100).")
    ] = None,
) -> None:
    """Serve the console on PPW_CONSOLE_HOST:PPW_CONSOLE_PORT (127.0.0.1:9100) until Ctrl-C.

    Off unless PPW_CONSOLE_ENABLED=true; needs PPW_CONSOLE_SECRET and at least one
    PPW_CONSOLE_USERS__<NAME>=<viewer|operator>:<hash>.
    """
    if ctx.invoked_subcommand is not None:
        return
    # lazy: `ppw --help` imports every command module
    from worker.console.auth import ConsoleConfigError
    from worker.console.server import ConsoleDisabled, serve
    from worker.state.durability import UnsafeStateStore

    try:
        serve(load_settings(), port=port, say=lambda line: typer.echo(line, err=True))
    except (ConsoleDisabled, ConsoleConfigError, UnsafeStateStore) as exc:
        raise fail(str(exc), code=2) from None


@app.command("hash-password")
def hash_password() -> None:
    """Print an argon2 hash of a password read from the terminal (asked twice) or stdin (one line).

    The password is never an argument, so it stays out of shell history and process lists.
    """
    # lazy: `ppw --help` imports every command module
    from worker.console.auth import ConsoleConfigError
    from worker.console.auth import hash_password as make_hash

    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        hashed = make_hash(password)
    except ConsoleConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(hashed)
    typer.echo("use it as PPW_CONSOLE_USERS__<NAME>=<viewer|operator>:<the hash>", err=True)
