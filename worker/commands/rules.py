"""``ppw rules check|test|explain|schema``: parse the arguments, call :mod:`worker.rules`, print."""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

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


@app.command()
def check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Rule files or directories (default: PPW_RULES_DIR)")
    ] = None,
    output: FormatOption = Format.text,
    strict: Annotated[bool, typer.Option(help="Treat warnings as errors")] = False,
) -> None:
    """Check rule files without a broker or PracticePanther: syntax, schema, fields, templates."""
    from worker.rules.diagnostics import count
    from worker.rules.loader import load_rules

    ruleset = load_rules(paths or None)
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
    from worker.rules import schema as rules_schema
    from worker.settings import get_settings

    target = output or get_settings().rules_dir / "schema.json"
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
    kind: Annotated[EventKind | None, typer.Option("--type", help="Force the event type")] = None,
    own: Annotated[bool, typer.Option("--own-change", help="Pretend ppw made the change")] = False,
    rule: Annotated[list[str] | None, typer.Option("--rule", help="Only these rule ids")] = None,
    now: Annotated[str | None, typer.Option(help="ISO time for now() (default: the real clock)")] = None,
    output: FormatOption = Format.text,
) -> None:
    """Evaluate rules against an event with no side effects: checks, condition values, payloads."""
    from ruamel.yaml.error import YAMLError

    from worker.rules import report
    from worker.rules.engine import Engine
    from worker.rules.explain import event_from_data
    from worker.rules.filters import to_datetime
    from worker.rules.loader import load_rules
    from worker.rules.source import load_data

    if (event is None) == (record is None):
        raise typer.BadParameter("give exactly one of --event or --record")
    if record is not None and not resource:
        raise typer.BadParameter("--record needs --resource (e.g. --resource matters)")
    ruleset = load_rules([rules])
    for diagnostic in ruleset.diagnostics:
        typer.echo(diagnostic.format(), err=True)
    try:
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
    fixed = to_datetime(now) if now else None
    engine = Engine(
        ruleset, clock=(lambda: fixed) if fixed is not None else (lambda: dt.datetime.now(dt.UTC))
    )
    selected = [r for r in ruleset if not rule or r.id in rule]
    evaluations = [engine.evaluate(r, sample) for r in selected]
    if output is Format.json:
        _emit_json(
            {
                "event": sample.model_dump(mode="json"),
                "matched": [e.rule.id for e in evaluations if e.matched],
                "rules": [e.to_dict() for e in evaluations],
            }
        )
    else:
        typer.echo(f"event: {sample.type} {sample.resource} {sample.record_id} (origin {sample.origin})")
        for item in evaluations:
            typer.echo("")
            typer.echo(report.evaluation(item))
        if not evaluations:
            typer.echo("no rules to evaluate")
    raise typer.Exit(1 if ruleset.errors else 0)


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
    from worker.practicepanther import resources
    from worker.practicepanther.errors import PracticePantherError
    from worker.rules import report
    from worker.rules.engine import Engine
    from worker.rules.explain import explain_live
    from worker.rules.loader import load_rules
    from worker.settings import get_settings

    settings = get_settings()
    try:
        name = resources.get(resource).name
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0])) from None
    ruleset = load_rules([rules] if rules else None, settings=settings)
    for diagnostic in ruleset.errors:
        typer.echo(diagnostic.format(), err=True)
    try:
        result = explain_live(Engine(ruleset, settings=settings), settings, name, record_id)
    except PracticePantherError as exc:
        typer.echo(f"error: could not fetch {name} {record_id}: {exc}", err=True)
        raise typer.Exit(2) from None
    if output is Format.json:
        _emit_json(result.to_dict())
    else:
        typer.echo(report.explanation(result, verbose=verbose))
