"""PracticePanther's own resource names work wherever ppw takes a resource (issue 15).

A user copies ``timeentries`` from an API URL or ``TimeEntries`` from the swagger as often as
``time_entries`` from ppw's docs. Every collection path of the packaged swagger (the segment as
written, its lower-case form and the swagger's tag for it) must load in a rule trigger, a query and
a step, pass the editor schema, work on the command line and in the settings, and come out as the
catalogue name, which is what messages, run history and metrics show.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner, Result

from tests.polling.conftest import Harness, _harness
from tests.rules.conftest import RULES_DIR
from worker.cli import app
from worker.polling.poller import PollOptions
from worker.polling.scheduler import polled_resources
from worker.practicepanther import resources
from worker.practicepanther.resources import FieldSpec, Resource
from worker.rules import schema as rules_schema
from worker.rules.loader import FileRules, load_text
from worker.rules.model import Rule
from worker.sandbox import SandboxServer
from worker.settings import Settings, get_settings
from worker.state.sqlite import SqliteStore

SWAGGER = Path(resources.__file__).with_name("swagger-v2.json")
PREFIX = "/api/v2/"
RECORD_ID = "{{ record.id }}"

runner = CliRunner()


def _swagger() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SWAGGER.read_text(encoding="utf-8"))
    return data


def _segments() -> list[str]:
    """The first path segment after ``/api/v2/`` of every path of the swagger, as written."""
    found = {path.removeprefix(PREFIX).split("/")[0] for path in _swagger()["paths"]}
    return sorted(found)


def _tags() -> list[str]:
    """The swagger's tag of every operation (``TimeEntries``, ``ExpenseCategories`` ...)."""
    ops = [op for item in _swagger()["paths"].values() for op in item.values()]
    return sorted({tag for op in ops for tag in op.get("tags", ())})


def _spellings() -> list[str]:
    """Each segment as written and lower-cased, and each tag as written and lower-cased."""
    found = [*_segments(), *(s.lower() for s in _segments()), *_tags(), *(t.lower() for t in _tags())]
    return sorted(set(found))


SPELLINGS = _spellings()


def _canonical(spelling: str) -> str:
    name = resources.resolve_name(spelling)
    assert name is not None, f"{spelling!r} from the swagger names no resource"
    return name


def _resource(spelling: str) -> Resource:
    return resources.catalogue()[_canonical(spelling)]


def _ok(loaded: FileRules) -> Rule:
    assert [d.format() for d in loaded.diagnostics] == []
    [entry] = loaded.rules
    return entry.rule


def _sample(spec: FieldSpec, ref: str = RECORD_ID) -> Any:
    """A value the checker accepts for ``spec``; references and ids are the template ``ref``."""
    if spec.enum:
        return spec.enum[0]
    if spec.kind == "object":
        return {"id": ref}
    samples = {"datetime": "2026-04-15T10:00:00Z", "integer": 1, "number": 1.5, "boolean": True, "array": []}
    return samples.get(spec.kind, ref if spec.kind == "uuid" else "x")


def _create_data(resource: Resource, ref: str = RECORD_ID) -> dict[str, Any]:
    names = [n for n in resource.required_on_create if n not in resources.READ_ONLY_FIELDS]
    return {name: _sample(resource.fields[name], ref) for name in names}


def _match(resource: Resource) -> dict[str, Any]:
    """Fields to match on: every field a create needs (find_or_create may create), else the first
    plain string field."""
    data = {name: _sample(resource.fields[name]) for name in resource.required_on_create}
    if data:
        return data
    name = next(
        n for n, f in resource.fields.items() if f.kind == "string" and not f.enum and not f.read_only
    )
    return {name: "x"}


def _rule_text(trigger: str, *steps: tuple[str, dict[str, Any]]) -> str:
    """A rule file as a person writes it (YAML; flow mappings for the ``with:`` blocks)."""
    lines = ["id: spelled", f"trigger: {trigger}", "steps:"]
    if not steps:
        steps = (("log", {"message": "seen"}),)
    for step_type, with_ in steps:
        lines += [f"  - type: {step_type}", f"    with: {json.dumps(with_)}"]
    return "\n".join(lines) + "\n"


# -- the catalogue -------------------------------------------------------------------------------


def test_every_swagger_collection_maps_to_a_resource() -> None:
    for segment in _segments():
        resource = _resource(segment)
        assert resource.segment == segment, "the catalogue calls it as PracticePanther publishes it"
    assert {"TimeEntries", "ExpenseCategories", "CustomFields", "BankAccounts", "Expenses"} <= set(SPELLINGS)
    for spelling in SPELLINGS:
        assert resources.resolve_name(spelling.replace("_", "-")) == _canonical(spelling)
        assert resources.get(spelling).name == _canonical(spelling)


# -- rules: triggers, queries and steps ------------------------------------------------------------


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_trigger_uses_the_canonical_name(spelling: str) -> None:
    resource = _resource(spelling)
    loaded = load_text(_rule_text(f"{{resource: {spelling}, on: updated}}"))
    if not resource.pollable:
        [error] = loaded.diagnostics
        assert (
            error.message
            == f"{resource.name} cannot be watched: PracticePanther offers no way to list its changes"
        )
        return
    rule = _ok(loaded)
    assert rule.record_trigger is not None and rule.record_trigger.resource == resource.name
    assert rule.resource == resource.name and rule.trigger_kind == "record"


@pytest.mark.parametrize("spelling", [s for s in SPELLINGS if _resource(s).can_list])
def test_schedule_query_uses_the_canonical_name(spelling: str) -> None:
    rule = _ok(load_text(_rule_text(f"{{every: 1h, query: {{resource: {spelling}}}}}")))
    assert rule.schedule_trigger is not None and rule.schedule_trigger.query is not None
    assert rule.schedule_trigger.query.resource == _canonical(spelling)


def _steps_for(spelling: str) -> list[tuple[str, dict[str, Any]]]:
    """Every PracticePanther step the resource supports, naming it ``spelling``."""
    resource = _resource(spelling)
    steps: list[tuple[str, dict[str, Any]]] = []
    if resource.can_create:
        steps.append(("practicepanther.create", {"resource": spelling, "data": _create_data(resource)}))
    if resource.can_update:
        steps.append(("practicepanther.update", {"resource": spelling, "id": RECORD_ID, "data": {}}))
    if resource.can_list:
        steps.append(("practicepanther.find", {"resource": spelling, "result": "all"}))
    if resource.can_create and resource.can_list:
        steps.append(("practicepanther.find_or_create", {"resource": spelling, "match": _match(resource)}))
    assert steps, f"{resource.name} takes no step"
    return steps


def _trigger_for(spelling: str) -> str:
    """A record trigger on ``spelling`` where it can be watched, else on matters."""
    return f"{{resource: {spelling if _resource(spelling).pollable else 'matters'}, on: [created, updated]}}"


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_steps_use_the_canonical_name(spelling: str) -> None:
    resource = _resource(spelling)
    rule = _ok(load_text(_rule_text("{resource: matters}", *_steps_for(spelling))))
    for step in rule.steps:
        assert step.params.model_dump()["resource"] == resource.name, step.type
        assert step.raw_with()["resource"] == resource.name, "templates render from the canonical name"


@pytest.mark.parametrize(
    ("step_type", "with_", "message"),
    [
        ("practicepanther.create", {"resource": "Contacts", "data": {}}, "cannot create contacts"),
        ("practicepanther.update", {"resource": "Invoices", "id": "1", "data": {}}, "cannot update invoices"),
        (
            "practicepanther.find_or_create",
            {"resource": "Payments", "match": {"a": 1}},
            "cannot create payments",
        ),
    ],
)
def test_capability_errors_name_the_canonical_resource(
    step_type: str, with_: dict[str, Any], message: str
) -> None:
    [error] = load_text(_rule_text("{resource: matters}", (step_type, with_))).diagnostics
    assert error.message == f"PracticePanther's API {message}"


@pytest.mark.parametrize(
    ("where", "spelling", "meant"),
    [
        ("trigger", "TimeEntrys", "time_entries"),
        ("trigger", "mattters", "matters"),
        ("step", "ExpenseCategory", "expense_categories"),
        ("step", "time-entires", "time_entries"),
    ],
)
def test_unknown_spelling_has_a_did_you_mean(where: str, spelling: str, meant: str) -> None:
    if where == "trigger":
        text = _rule_text(f"{{resource: {spelling}}}")
    else:
        text = _rule_text("{resource: matters}", ("practicepanther.find", {"resource": spelling}))
    loaded = load_text(text)
    [error] = [d for d in loaded.diagnostics if d.is_error]
    assert error.message == f"unknown resource '{spelling}'"
    assert error.hint == f"did you mean {meant!r}?"
    assert loaded.rules == []


def test_nothing_near_lists_the_resources() -> None:
    [error] = load_text(_rule_text("{resource: spaceships}")).diagnostics
    assert error.message == "unknown resource 'spaceships'"
    assert error.hint is not None and error.hint.startswith("expected one of 'accounts', ")


# -- the editor schema -------------------------------------------------------------------------------


def _committed_schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RULES_DIR / "schema.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("source", ["committed", "generated"])
def test_schema_accepts_practicepanther_spellings(source: str) -> None:
    schema = _committed_schema() if source == "committed" else rules_schema.build_schema()
    validator = jsonschema.Draft202012Validator(schema)
    rule = {
        "id": "spelled",
        "trigger": {"resource": "TimeEntries", "on": "created"},
        "steps": [
            {
                "type": "practicepanther.create",
                "with": {"resource": "TimeEntries", "data": _create_data(resources.get("time_entries"))},
            },
            {"type": "practicepanther.find", "with": {"resource": "ExpenseCategories"}},
            {"type": "practicepanther.update", "with": {"resource": "timeentries", "id": "1", "data": {}}},
        ],
    }
    assert [e.message for e in validator.iter_errors(rule)] == []
    for spelling in SPELLINGS:
        trigger = {**rule, "trigger": {"resource": spelling}}
        assert [e.message for e in validator.iter_errors(trigger)] == [], spelling
    # the data of a PracticePanther-spelled step is still checked against that resource's fields
    typo = {"resource": "TimeEntries", "data": {**_create_data(resources.get("time_entries")), "hourz": 1}}
    assert list(validator.iter_errors({**rule, "steps": [{"type": "practicepanther.create", "with": typo}]}))
    unknown = {**rule, "trigger": {"resource": "TimeEntrys"}}
    assert list(validator.iter_errors(unknown))


def test_schema_offers_ppw_names_first() -> None:
    enum = rules_schema.build_schema()["$defs"]["RecordTrigger"]["properties"]["resource"]["enum"]
    names = sorted(resources.catalogue())
    assert enum[: len(names)] == names
    assert {"TimeEntries", "timeentries", "ExpenseCategories", "CustomFields"} <= set(enum[len(names) :])


# -- the command line ----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    env = {
        "PPW_RULES_DIR": str(rules_dir),
        "PPW_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "PPW_BROKER_URL": "memory://",
        "PPW_POLL_RESOURCES": "",
    }
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def _invoke(env: dict[str, str], *args: str) -> Result:
    get_settings.cache_clear()
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def test_rules_check_accepts_practicepanther_spellings(cli_env: dict[str, str]) -> None:
    rules_dir = Path(cli_env["PPW_RULES_DIR"])
    match = _create_data(resources.get("time_entries"), "{{ results[0].id }}")
    (rules_dir / "entries.yaml").write_text(
        _rule_text(
            "{resource: TimeEntries, on: created}",
            (
                "practicepanther.create",
                {"resource": "Expenses", "data": _create_data(resources.get("expenses"))},
            ),
            ("practicepanther.update", {"resource": "timeentries", "id": "{{ record.id }}", "data": {}}),
        )
    )
    (rules_dir / "categories.yaml").write_text(
        "id: categories\n"
        "trigger: {every: 1h, query: {resource: ExpenseCategories}}\n"
        "steps:\n"
        "  - type: practicepanther.find_or_create\n"
        f"    with: {json.dumps({'resource': 'TimeEntries', 'match': match})}\n"
    )
    result = _invoke(cli_env, "rules", "check")
    assert result.exit_code == 0, result.output
    assert "2 file(s), 2 rule(s) loaded: 0 error(s), 0 warning(s)" in result.output
    (rules_dir / "typo.yaml").write_text(_rule_text("{resource: TimeEntrys}").replace("spelled", "typo"))
    failed = _invoke(cli_env, "rules", "check")
    assert failed.exit_code == 1
    assert "unknown resource 'TimeEntrys' (hint: did you mean 'time_entries'?)" in failed.output


def test_rules_check_every_spelling_as_typed(cli_env: dict[str, str]) -> None:
    rules_dir = Path(cli_env["PPW_RULES_DIR"])
    for index, spelling in enumerate(SPELLINGS):
        text = _rule_text(_trigger_for(spelling), *_steps_for(spelling))
        (rules_dir / f"{index:02d}-{spelling}.yaml").write_text(
            text.replace("id: spelled", f"id: rule-{index}")
        )
    result = _invoke(cli_env, "rules", "check", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["rules"] == len(SPELLINGS) and report["diagnostics"] == []


def test_rules_test_record_with_a_practicepanther_spelling(cli_env: dict[str, str], tmp_path: Path) -> None:
    rules_dir = Path(cli_env["PPW_RULES_DIR"])
    (rules_dir / "entry.yaml").write_text(_rule_text("{resource: timeentries, on: created}"))
    record = tmp_path / "entry.json"
    record.write_text(json.dumps({"id": "te-1", "hours": 1.5, "updated_at": "2026-04-15T10:00:00Z"}))
    args = ["rules", "test", str(rules_dir), "--record", str(record), "--resource", "TimeEntries"]
    result = _invoke(cli_env, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["event"]["resource"] == "time_entries"
    assert report["matched"] == ["spelled"]


def test_status_lists_configured_spellings_by_their_canonical_name(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "PPW_POLL_RESOURCES": "TimeEntries,ExpenseCategories,matters"}
    result = _invoke(env, "status", "--json")
    assert result.exit_code == 0, result.output
    names = [row["resource"] for row in json.loads(result.stdout)["resources"]]
    assert names == ["expense_categories", "matters", "time_entries"]


@pytest.fixture
def sandbox_harness(
    sandbox_factory: Callable[..., SandboxServer], sqlite_store: SqliteStore, connection_id: str
) -> Iterator[Harness]:
    yield from _harness(sandbox_factory, sqlite_store, connection_id)


def test_poll_once_dry_run_with_practicepanther_spellings(sandbox_harness: Harness, tmp_path: Path) -> None:
    settings = sandbox_harness.settings
    env = {
        "PPW_PP_BASE_URL": settings.pp_base_url,
        "PPW_PP_CLIENT_ID": settings.pp_client_id,
        "PPW_PP_CLIENT_SECRET": settings.pp_client_secret.get_secret_value(),
        "PPW_PP_REDIRECT_URI": settings.pp_redirect_uri,
        "PPW_STATE_URL": sandbox_harness.store.url,
        "PPW_CONNECTION_ID": sandbox_harness.connection,
        "PPW_BROKER_URL": "memory://",
        "PPW_RULES_DIR": str(tmp_path),
    }
    # custom fields are listed per kind (company, matter, contact): `ppw poll once` cannot list them
    pollable = [s for s in SPELLINGS if _resource(s).pollable and "" in _resource(s).list_paths]
    assert {"TimeEntries", "timeentries", "ExpenseCategories", "Expenses", "Matters"} <= set(pollable)
    try:
        for spelling in pollable:
            result = _invoke(env, "poll", "once", spelling, "--dry-run", "--json")
            assert result.exit_code == 0, f"{spelling}: {result.output}"
            data = json.loads(result.output)
            assert data["resource"] == _canonical(spelling) and data["dry_run"], spelling
    finally:
        get_settings.cache_clear()


# -- settings ----------------------------------------------------------------------------------------


def test_poll_settings_take_practicepanther_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PPW_POLL_RESOURCES", "TimeEntries,Matters")
    monkeypatch.setenv("PPW_POLL_USE_UPDATED_SINCE", "ExpenseCategories, timeentries")
    monkeypatch.setenv("PPW_BACKFILL_SINCE__TIMEENTRIES", "2026-01-01")
    monkeypatch.setenv("PPW_BACKFILL_SINCE__EXPENSES", "2026-02-01T00:00:00Z")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert polled_resources(settings) == ["time_entries", "matters"]
    assert polled_resources(settings, ["TimeEntries", "contacts"]) == ["time_entries", "matters", "contacts"]
    options = PollOptions.from_settings(settings)
    assert options.use_updated_since == {"expense_categories", "time_entries"}
    assert set(options.backfill_since) == {"time_entries", "expenses"}


def test_unknown_names_in_settings_are_kept_for_the_poller_to_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PPW_POLL_RESOURCES", "TimeEntries,widgets")
    monkeypatch.setenv("PPW_POLL_USE_UPDATED_SINCE", "*")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert polled_resources(settings) == ["time_entries"]  # widgets: logged as unknown, not polled
    assert PollOptions.from_settings(settings).use_updated_since == {r.name for r in resources.pollable()}
