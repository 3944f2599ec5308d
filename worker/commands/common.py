"""What the command groups share: the ``--connection`` and ``--json`` options, errors, the settings.

Kept free of heavy imports so ``ppw --help`` stays quick: the settings are read on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from worker.settings import Settings

ConnectionOpt = Annotated[
    str | None, typer.Option("--connection", help="Connection id (default PPW_CONNECTION_ID).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Say ``error: message`` on stderr; the exit to raise (``raise fail(...) from None``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def load_settings() -> Settings:
    """The process-wide settings (:func:`worker.settings.get_settings`), imported on first use."""
    # lazy: `ppw --help` imports every command module
    from worker.settings import get_settings

    return get_settings()
