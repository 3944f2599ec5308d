"""``ppw calendar``: the firm's coming non-business days (holidays and closures), with names."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated

import typer

from worker.commands.common import JsonOpt, fail, load_settings


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("calendar")(calendar)


def calendar(
    days: Annotated[int, typer.Option("--days", min=1, max=3660, help="How many days to look ahead.")] = 60,
    start: Annotated[
        str | None, typer.Option("--from", help="First day (YYYY-MM-DD); default today in PPW_TIMEZONE.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the holidays and closures of the firm calendar (PPW_HOLIDAYS, PPW_CLOSURES,
    PPW_CLOSURES_FILE) in the coming days, in the firm's time zone (PPW_TIMEZONE)."""
    # lazy: `ppw --help` imports every command module
    from worker.calendar import Calendar, CalendarError

    try:
        firm = Calendar.from_settings(load_settings())
        first = date.fromisoformat(start) if start else datetime.now(firm.zone).date()
        found = firm.upcoming(first, days)
    except CalendarError as exc:
        raise fail(str(exc)) from None
    except ValueError:
        raise fail(f"--from {start!r}: expected a date like 2026-12-24") from None
    if as_json:
        document = {
            "timezone": firm.zone.key,
            "holidays": list(firm.holiday_codes),
            "from": first.isoformat(),
            "days": days,
            "non_business_days": [
                {"date": day.isoformat(), "weekday": day.strftime("%a"), "name": name} for day, name in found
            ],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(firm.describe())
    if not found:
        typer.echo(f"no holidays or closures in the {days} days from {first.isoformat()}")
    for day, name in found:
        typer.echo(f"{day.isoformat()}  {day.strftime('%a')}  {name}")
