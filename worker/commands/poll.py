"""CLI commands for poll (to be filled in by its owner)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
