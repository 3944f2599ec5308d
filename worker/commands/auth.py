"""``ppw auth login|status|logout|generate-key``: connect this worker to PracticePanther.

Thin: parses options, opens the state store and calls :mod:`worker.practicepanther`. The
authorize URL goes to stdout on a line of its own (so a script can read it); everything meant
for a human goes to stderr.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import typer

from worker.practicepanther.auth import login as run_login
from worker.practicepanther.errors import PracticePantherError
from worker.practicepanther.status import Health, connection_status
from worker.practicepanther.tokens import TokenStore, TokenStoreError, generate_key, user_label
from worker.settings import get_settings
from worker.state import StateError, open_store

app = typer.Typer(no_args_is_help=True)

ConnectionOption = typer.Option(
    None, "--connection", "-c", help="Connection id (default: PPW_CONNECTION_ID)."
)


def _say(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def login(
    open_: bool = typer.Option(False, "--open", help="Also open the authorize URL in a browser."),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Never open a browser: print the URL and wait (SSH, scripts)."
    ),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="Seconds to wait for the redirect."),
    connection: str | None = ConnectionOption,
) -> None:
    """Authorise this worker with PracticePanther (OAuth 2 authorization code) and store the tokens."""
    settings = get_settings()
    if not settings.pp_client_id or not settings.pp_client_secret.get_secret_value():
        _say("PPW_PP_CLIENT_ID and PPW_PP_CLIENT_SECRET must be set (ask PracticePanther for API access).")
        raise typer.Exit(1)
    store = open_store(settings.state_url)

    def show(url: str) -> None:
        _say(f"Open this URL in a browser and allow access (waiting up to {timeout:g} s):")
        typer.echo(url)
        _say(f"PracticePanther will redirect to {settings.pp_redirect_uri}, where ppw is listening.")

    try:
        tokens = run_login(
            settings,
            store,
            open_browser=open_ and not no_browser,
            timeout=timeout,
            on_url=show,
            connection=connection,
        )
    except (PracticePantherError, TokenStoreError, StateError) as exc:
        _say(f"Login failed: {getattr(exc, 'message', exc)}")
        raise typer.Exit(1) from None
    finally:
        store.close()
    who = user_label(tokens.user) or "an unnamed user"
    name = connection or settings.connection_id
    _say(f"Connected to PracticePanther as {who}; tokens stored for connection {name!r}.")


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    offline: bool = typer.Option(
        False, "--offline", help="Only read the stored tokens; do not call PracticePanther."
    ),
    connection: str | None = ConnectionOption,
) -> None:
    """Who is connected, when the access token expires, how old the refresh token is.

    Exit code 0 when connected, 1 when not logged in or re-authorisation is needed, 2 when
    PracticePanther or the state backend could not be asked.
    """
    settings = get_settings()
    try:
        store = open_store(settings.state_url)
    except (StateError, ValueError) as exc:
        _say(f"cannot open the state backend: {exc}")
        raise typer.Exit(Health.UNKNOWN) from None
    try:
        result = connection_status(settings, store, connection=connection, check=not offline)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        raise typer.Exit(int(result.health))
    lines = [f"connection:   {result.connection}", f"status:       {result.summary}"]
    if result.user:
        lines.append(f"user:         {user_label(result.user) or result.user.get('id')}")
    if result.expires_at:
        lines.append(f"access token: expires {_when(result.expires_at)}")
    if result.refresh_age is not None:
        lines.append(
            f"refresh token: obtained {_age(result.refresh_age)} ago (PracticePanther keeps it 60 days)"
        )
    if result.expires_at or result.needs_reauth:
        lines.append(
            f"encrypted at rest: {'yes' if result.encrypted else 'no (set PPW_TOKEN_ENCRYPTION_KEY)'}"
        )
    lines.extend(f"note:         {d}" for d in result.details)
    typer.echo("\n".join(lines))
    raise typer.Exit(int(result.health))


@app.command()
def logout(connection: str | None = ConnectionOption) -> None:
    """Forget the stored tokens (PracticePanther has no revocation endpoint; revoke there if needed)."""
    settings = get_settings()
    store = open_store(settings.state_url)
    try:
        removed = TokenStore(store, connection or settings.connection_id, None).clear()
    finally:
        store.close()
    _say("Tokens forgotten." if removed else "No tokens were stored.")


@app.command("generate-key")
def generate_key_command() -> None:
    """Print a new key for PPW_TOKEN_ENCRYPTION_KEY (encrypts the stored tokens)."""
    typer.echo(generate_key())


def _when(moment: datetime) -> str:
    delta = moment - datetime.now(UTC)
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if delta.total_seconds() < 0:
        return f"{stamp} (expired {_age(-delta)} ago; refreshed on next use)"
    return f"{stamp} (in {_age(delta)})"


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"
