"""``ppw customfields pull|export|show``: the account's custom field definitions, cached and exported.

``pull`` reads them from PracticePanther into the state store (the worker refreshes the same
cache on its own); ``export FILE`` writes the cache (pulling first when it is empty, or with
``--pull``) to a JSON file that ``ppw rules check --custom-fields FILE`` reads, so CI can check
labels and dropdown options without credentials.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from worker.commands.common import ConnectionOpt, JsonOpt, fail, load_settings

if TYPE_CHECKING:
    from worker.practicepanther.customfields import Definitions

app = typer.Typer(no_args_is_help=True)


def _pull(connection: str | None) -> Definitions:
    # lazy: `ppw --help` imports every command module
    from worker.errors import PpwError
    from worker.practicepanther import customfields
    from worker.practicepanther.client import PracticePantherClient
    from worker.state import open_store

    settings = load_settings()
    conn = connection or settings.connection_id
    store = open_store(settings.state_url)
    try:
        with PracticePantherClient(settings, store, connection=conn) as client:
            return customfields.refresh(client, store, conn)
    except PpwError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()


def _cached(connection: str | None) -> Definitions | None:
    # lazy: `ppw --help` imports every command module
    from worker.practicepanther import customfields

    settings = load_settings()
    return customfields.cached(settings.state_url, connection or settings.connection_id)


def _summary(definitions: Definitions) -> str:
    return (
        ", ".join(f"{scope} {len(fields)}" for scope, fields in sorted(definitions.scopes.items())) or "none"
    )


@app.command("pull")
def pull(connection: ConnectionOpt = None, as_json: JsonOpt = False) -> None:
    """Read the definitions from PracticePanther into the state store."""
    definitions = _pull(connection)
    if as_json:
        typer.echo(json.dumps(definitions.to_json(), indent=2))
        return
    typer.echo(f"custom fields cached: {_summary(definitions)}")


@app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="The JSON file to write (for rules check --custom-fields)")],
    refresh: Annotated[
        bool, typer.Option("--pull", help="Read PracticePanther first (default: the cache, pulled if empty)")
    ] = False,
    connection: ConnectionOpt = None,
) -> None:
    """Write the definitions to a file `ppw rules check --custom-fields FILE` reads."""
    definitions = None if refresh else _cached(connection)
    if definitions is None:
        definitions = _pull(connection)
    definitions.dump(file)
    typer.echo(f"wrote {file}: {_summary(definitions)}")


@app.command("show")
def show(
    file: Annotated[Path | None, typer.Option("--file", help="An export file instead of the cache")] = None,
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the definitions: label, type and options, per scope."""
    # lazy: `ppw --help` imports every command module
    from worker.practicepanther.customfields import CustomFieldError, Definitions

    try:
        definitions = Definitions.load(file) if file is not None else _cached(connection)
    except CustomFieldError as exc:
        raise fail(str(exc)) from None
    if definitions is None:
        raise fail("no custom field definitions cached: run `ppw customfields pull`")
    if as_json:
        typer.echo(json.dumps(definitions.to_json(), indent=2))
        return
    for scope, fields in sorted(definitions.scopes.items()):
        typer.echo(f"{scope} (fetched {definitions.fetched_at.get(scope) or '?'})")
        for field in fields:
            options = f"  [{', '.join(field.options)}]" if field.options else ""
            typer.echo(f"  {field.label:<32} {field.value_type}{options}")
