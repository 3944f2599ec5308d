"""``ppw sandbox``: run the PracticePanther simulator in the foreground (see docs/sandbox.md)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("sandbox")
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8080,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the demo firm's data: the same seed gives identical data.")
    ] = 1,
    empty: Annotated[bool, typer.Option("--empty", help="Start with no data except the API user.")] = False,
    churn: Annotated[float, typer.Option(help="Background changes per minute (0 = none).")] = 0.0,
    token_lifetime: Annotated[float, typer.Option(help="Access token lifetime in seconds.")] = 86400.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="A fault as name=value, repeatable (rate_429=0.1, latency=0.5 ...)."),
    ] = None,
    client_id: Annotated[str, typer.Option(help="OAuth client id to accept.")] = "ppw-sandbox-client",
    client_secret: Annotated[str, typer.Option(help="OAuth client secret to accept.")] = "ppw-sandbox-secret",
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="Registered redirect URI, repeatable.")
    ] = None,
    max_page_size: Annotated[int, typer.Option(help="Most records one list call returns.")] = 2500,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the PracticePanther sandbox: the swagger's API, OAuth 2, seed data, churn and faults."""
    # lazy: `ppw --help` imports every command module
    from worker.sandbox.cli import run_sandbox

    try:
        run_sandbox(
            host=host,
            port=port,
            seed=None if empty else seed,
            churn=churn,
            token_lifetime=token_lifetime,
            faults=fault or [],
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=redirect_uri or ["http://127.0.0.1:8765/callback"],
            max_page_size=max_page_size,
            log_level=log_level,
            echo=typer.echo,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
