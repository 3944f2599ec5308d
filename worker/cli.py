"""The ``ppw`` command line: a thin shell that parses arguments and calls into the library.

Each command group lives in ``worker/commands/<area>.py`` next to the concept it drives, so the
groups can grow independently; this module only assembles them.
"""

from __future__ import annotations

import typer

from worker.commands import (
    auth,
    calendar,
    console,
    customfields,
    poll,
    rules,
    run,
    runs,
    sandbox,
    state,
    timers,
)

app = typer.Typer(
    name="ppw",
    help="PracticePanther automation worker: polls for changes and runs YAML rules.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(sandbox.app)
app.add_typer(auth.app, name="auth", help="Connect to PracticePanther (OAuth 2).")
app.add_typer(rules.app, name="rules", help="Check, test, explain rules; write the schema.")
app.add_typer(
    customfields.app,
    name="customfields",
    help="Custom field definitions: pull, export for rules check, show.",
)
poll.register(app)
runs.register(app)
run.register(app)
calendar.register(app)
state.register(app)
timers.register(app)
console.register(app)


def main() -> None:
    """Console-script entry point (``ppw``)."""
    app()


if __name__ == "__main__":
    main()
