"""``ppw rules check|test|explain|schema``: parse the arguments, call :mod:`worker.rules`, print."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from worker.commands.common import fail, load_settings

app = typer.Typer(no_args_is_help=True)


class Format(StrEnum):
    text = "text"
    json = "json"


class EventKind(StrEnum):
    created = "created"
    updated = "updated"
    deleted = "deleted"


FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="text for people, json for CI and tools")
]


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _calendar(settings: Any) -> Any:
    """The firm calendar, or one clear line naming the bad setting (``PPW_HOLIDAYS``,
    ``PPW_TIMEZONE``, ``PPW_CLOSURES``, ``PPW_CLOSURES_FILE``) and the form it takes; exit 2."""
    # lazy: `ppw --help` imports every command module
    from worker.calendar import Calendar, CalendarError

    try:
        return Calendar.from_settings(settings)
    except CalendarError as exc:
        raise fail(str(exc), code=2) from None


@app.command()
def check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Rule files or directories (default: PPW_RULES_DIR)")
    ] = None,
    output: FormatOption = Format.text,
    strict: Annotated[bool, typer.Option(help="Treat warnings as errors")] = False,
    custom_fields: Annotated[
        Path | None,
        typer.Option(
            "--custom-fields",
            help="Custom field definitions (`ppw customfields export FILE`) to check labels against; "
            "default: the state store's cache, when there is one",
        ),
    ] = None,
) -> None:
    """Check rule files without a broker or PracticePanther: syntax, schema, fields, templates."""
    # lazy: `ppw --help` imports every command module
    from worker.practicepanther import customfields
    from worker.rules.diagnostics import count
    from worker.rules.loader import load_rules

    try:
        definitions = (
            customfields.Definitions.load(custom_fields)
            if custom_fields is not None
            else customfields.cached(load_settings().state_url, load_settings().connection_id)
        )
    except customfields.CustomFieldError as exc:
        raise fail(str(exc), code=2) from None
    _calendar(load_settings())  # business days in rules mean nothing with a calendar that cannot load
    ruleset = load_rules(paths or None, custom_fields=definitions)
    diagnostics = list(ruleset.diagnostics)
    errors, warnings = count(diagnostics)
    failed = errors > 0 or (strict and warnings > 0)
    if output is Format.json:
        _emit_json(
            {
                "ok": not failed,
                "files": len(ruleset.files),
                "rules": len(ruleset),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": [d.to_dict() for d in diagnostics],
            }
        )
    else:
        for diagnostic in diagnostics:
            typer.echo(diagnostic.format())
        summary = (
            f"{len(ruleset.files)} file(s), {len(ruleset)} rule(s) loaded: "
            f"{errors} error(s), {warnings} warning(s)"
        )
        typer.echo(summary, err=bool(diagnostics))
    raise typer.Exit(1 if failed else 0)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: <rules dir>/schema.json")
    ] = None,
    check_only: Annotated[
        bool, typer.Option("--check", help="Only verify the file is up to date (exit 1 if not)")
    ] = False,
) -> None:
    """Write the JSON Schema editors use to complete and check rule files."""
    # lazy: `ppw --help` imports every command module
    from worker.rules import schema as rules_schema

    target = output or load_settings().rules_dir / "schema.json"
    if check_only:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != rules_schema.render():
            typer.echo(f"{target} is out of date: run `ppw rules schema`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{target} is up to date")
        return
    changed = rules_schema.write(target)
    typer.echo(f"{'wrote' if changed else 'unchanged'} {target}")


@app.command("test")
def test_rules(
    rules: Annotated[Path, typer.Argument(help="A rule file or directory")],
    event: Annotated[Path | None, typer.Option(help="An event (JSON/YAML) to evaluate")] = None,
    record: Annotated[
        Path | None, typer.Option(help="A record (JSON/YAML); the event is built from it")
    ] = None,
    previous: Annotated[
        Path | None, typer.Option(help="The record before the change (makes it 'updated')")
    ] = None,
    resource: Annotated[str | None, typer.Option(help="Resource of --record (e.g. matters)")] = None,
    payload: Annotated[
        Path | None, typer.Option(help="A webhook body (JSON/YAML) delivered to the rules' hook")
    ] = None,
    hook: Annotated[
        str | None, typer.Option(help="The hook --payload is delivered to (when the rules have several)")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            help="Alone: run schedule rules' slot at (or last before) this ISO time (the query "
            "uses the configured PracticePanther, live or sandbox). With --event or --record: "
            "the moment to evaluate at (now() too, unless --now), showing when date triggers "
            "would fire, for: durations end and waits wake; no offset means the firm zone"
        ),
    ] = None,
    results: Annotated[
        Path | None, typer.Option(help="With --at: these records (JSON/YAML list) instead of the query")
    ] = None,
    kind: Annotated[EventKind | None, typer.Option("--type", help="Force the event type")] = None,
    own: Annotated[bool, typer.Option("--own-change", help="Pretend ppw made the change")] = False,
    rule: Annotated[list[str] | None, typer.Option("--rule", help="Only these rule ids")] = None,
    now: Annotated[str | None, typer.Option(help="ISO time for now() (default: the real clock)")] = None,
    output: FormatOption = Format.text,
) -> None:
    """Evaluate rules against an event, a webhook payload or a schedule slot, with no side effects."""
    from ruamel.yaml.error import YAMLError

    from worker.calendar import to_datetime

    # lazy: `ppw --help` imports every command module
    from worker.rules.explain import event_from_data
    from worker.rules.loader import load_rules
    from worker.rules.source import load_data

    given = [
        name for name, value in (("--event", event), ("--record", record), ("--payload", payload)) if value
    ]
    if len(given) > 1 or (not given and at is None):
        raise typer.BadParameter(
            "give exactly one of --event or --record (or --payload; --at alone runs schedule rules)"
        )
    if record is not None and not resource:
        raise typer.BadParameter("--record needs --resource (e.g. --resource matters)")
    if results is not None and (at is None or given):
        raise typer.BadParameter("--results goes with --at alone (schedule rules)")
    calendar = _calendar(load_settings())
    ruleset = load_rules([rules])
    for diagnostic in ruleset.diagnostics:
        typer.echo(diagnostic.format(), err=True)
    selected = [r for r in ruleset if not rule or r.id in rule]
    fixed = to_datetime(now) if now else None
    if at is not None and not given:
        _test_schedules(ruleset, selected, at, results, fixed, output)
        raise typer.Exit(1 if ruleset.errors else 0)
    moment = None
    if at is not None:
        # lazy: `ppw --help` imports every command module
        from worker.triggers.preview import parse_at

        try:
            moment = parse_at(at, calendar.zone)
        except ValueError:
            raise typer.BadParameter(f"--at {at!r} is not an ISO time (e.g. 2026-03-09T09:00)") from None
        fixed = fixed or moment
    notes: list[str] = []
    try:
        if payload is not None:
            # lazy: `ppw --help` imports every command module
            from worker.triggers.preview import payload_preview

            preview = payload_preview(selected, load_data(payload), hook=hook)
            sample = preview.event
            notes = [f"schema: {problem}" for problem in preview.problems]
        else:
            if event is not None:
                data = load_data(event)
            else:
                assert record is not None
                data = {"record": load_data(record), "resource": resource}
                if previous is not None:
                    data["previous"] = load_data(previous)
            if not isinstance(data, dict):
                raise ValueError("the file must hold a mapping")
            if kind is not None:
                data["type"] = kind.value
            if own:
                data["origin"] = "ppw"
            sample = event_from_data(data, resource=resource)
    except (OSError, ValueError, YAMLError) as exc:
        raise typer.BadParameter(str(exc)) from None
    _evaluate_and_print(ruleset, selected, [(sample, selected, notes)], fixed, output, at=moment)
    failed = bool(ruleset.errors) or (payload is not None and bool(notes))
    raise typer.Exit(1 if failed else 0)


def _test_schedules(
    ruleset: Any, selected: list[Any], at: str, results: Path | None, fixed: Any, output: Format
) -> None:
    """``ppw rules test --at``: one slot event per selected schedule rule."""
    from ruamel.yaml.error import YAMLError

    # lazy: `ppw --help` imports every command module
    from worker.rules.source import load_data
    from worker.triggers.preview import slot_preview

    settings = load_settings()
    schedules = [r for r in selected if r.rule.schedule_trigger is not None]
    if not schedules:
        raise typer.BadParameter("--at needs schedule rules; none of the selected rules has one")
    given: list[dict[str, Any]] | None = None
    if results is not None:
        try:
            loaded = load_data(results)
        except (OSError, ValueError, YAMLError) as exc:
            raise typer.BadParameter(str(exc)) from None
        if not isinstance(loaded, list):
            raise typer.BadParameter("--results must hold a list of records")
        given = loaded
    groups = []
    with _pp_client(
        settings, needed=given is None and any(r.rule.schedule_trigger.query for r in schedules)
    ) as (client):
        for loaded_rule in schedules:
            try:
                preview = slot_preview(loaded_rule, at, settings, client=client, results=given)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
            except Exception as exc:  # PracticePanther or the state store
                raise fail(f"{loaded_rule.id}: the query failed: {exc}", code=2) from None
            upcoming = ", ".join(s.isoformat() for s in preview.next_slots)
            notes = [f"slot {preview.slot.isoformat()}; next: {upcoming}"]
            if preview.query is not None:
                count = len(preview.event.record.get("results") or [])
                notes.append(
                    f"query {json.dumps(preview.query.describe(), default=str)}: {count} record(s)"
                    + (" (truncated)" if preview.truncated else "")
                )
            groups.append((preview.event, [loaded_rule], notes))
    _evaluate_and_print(ruleset, selected, groups, fixed, output, slot_clock=True)


def _clock(moment: dt.datetime | None) -> Callable[[], dt.datetime]:
    if moment is None:
        return lambda: dt.datetime.now(dt.UTC)
    return lambda: moment


class _NoClient:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _pp_client(settings: Any, *, needed: bool) -> Any:
    """A PracticePanther client context for --at queries (nothing when no query needs one)."""
    if not needed:
        return _NoClient()
    from contextlib import contextmanager

    # lazy: `ppw --help` imports every command module
    from worker.practicepanther.client import PracticePantherClient
    from worker.state import open_store

    @contextmanager
    def opened() -> Any:
        store = open_store(settings.state_url)
        try:
            with PracticePantherClient(settings, store) as client:
                yield lambda: client
        finally:
            store.close()

    return opened()


def _evaluate_and_print(
    ruleset: Any,
    selected: list[Any],
    groups: list[tuple[Any, list[Any], list[str]]],
    fixed: Any,
    output: Format,
    *,
    slot_clock: bool = False,
    at: dt.datetime | None = None,
) -> None:
    """Evaluate and print each group; the computed moments of each rule (date triggers, for:
    durations, waits) as of ``at`` (default: the template clock, or now)."""
    # lazy: `ppw --help` imports every command module
    from worker.rules import report
    from worker.rules.engine import Engine
    from worker.rules.explain import moments

    settings = load_settings()
    calendar = _calendar(settings)

    rendered: list[dict[str, Any]] = []
    for sample, rules_for_event, notes in groups:
        moment: dt.datetime | None = fixed
        if moment is None and slot_clock:
            moment = sample.detected_at
        engine = Engine(ruleset, clock=_clock(moment))
        evaluations = [engine.evaluate(r, sample) for r in rules_for_event]
        when = at or moment or dt.datetime.now(dt.UTC)
        timed = {
            e.rule.id: moments(
                e.rule.rule, sample.record, calendar, when,
                steps=e.steps if e.matched else (), backfill=settings.trigger_backfill,
            )
            for e in evaluations
        }  # fmt: skip
        if output is Format.json:
            rendered.append(
                {
                    "event": sample.model_dump(mode="json"),
                    "notes": notes,
                    "matched": [e.rule.id for e in evaluations if e.matched],
                    "rules": [
                        {**e.to_dict(), "moments": [m.to_dict() for m in timed[e.rule.id]]}
                        for e in evaluations
                    ],
                }
            )
            continue
        typer.echo(f"event: {sample.type} {sample.resource} {sample.record_id} (origin {sample.origin})")
        for note in notes:
            typer.echo(f"  {note}")
        for item in evaluations:
            typer.echo("")
            typer.echo(report.evaluation(item))
            if timed[item.rule.id]:
                typer.echo("  moments")
                for found in timed[item.rule.id]:
                    typer.echo(f"    {found.text()}")
        if not evaluations:
            typer.echo("no rules to evaluate")
    if output is Format.json:
        _emit_json(rendered[0] if len(rendered) == 1 else {"events": rendered})


@app.command()
def explain(
    resource: Annotated[str, typer.Argument(help="Resource, e.g. matters")],
    record_id: Annotated[str, typer.Argument(metavar="ID", help="The record's id")],
    rules: Annotated[
        Path | None, typer.Option(help="Rule file or directory (default: PPW_RULES_DIR)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Every check and step payload")] = False,
    output: FormatOption = Format.text,
) -> None:
    """Fetch a live record and say, for every rule, why it would or would not fire."""
    # lazy: `ppw --help` imports every command module
    from worker.practicepanther import resources
    from worker.practicepanther.errors import PracticePantherError
    from worker.rules import report
    from worker.rules.engine import Engine
    from worker.rules.explain import explain_live
    from worker.rules.loader import load_rules

    settings = load_settings()
    try:
        name = resources.get(resource).name
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0])) from None
    ruleset = load_rules([rules] if rules else None, settings=settings)
    for diagnostic in ruleset.errors:
        typer.echo(diagnostic.format(), err=True)
    _calendar(settings)
    try:
        result = explain_live(Engine(ruleset, settings=settings), settings, name, record_id)
    except PracticePantherError as exc:
        raise fail(f"could not fetch {name} {record_id}: {exc}", code=2) from None
    if output is Format.json:
        _emit_json(result.to_dict())
    else:
        typer.echo(report.explanation(result, verbose=verbose))
