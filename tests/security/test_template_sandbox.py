"""Rule templates cannot reach Python internals, the environment, or the worker's memory and time.

Rules are written by ops, but they render PracticePanther data that anyone with a client portal
can influence, so the sandbox must hold against both: escapes written into the template (refused
when the file is checked, before anything runs) and escapes steered by record data (refused when
the step renders). Each attempt goes through ``ppw rules check`` and ``ppw rules test`` as typed;
none may print a class, a module, a function, an environment value or a configured secret.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.cli import app
from worker.settings import get_settings

SECRET = "sek-template-probe-91f3"

#: (name, template) attempts written into the rule itself.
WRITTEN = [
    ("class of a string", "{{ ''.__class__.__mro__ }}"),
    ("attr filter with a built name", "{{ '' | attr('__cla' ~ 'ss__') }}"),
    ("globals of a helper", "{{ cycler.__init__.__globals__ }}"),
    ("globals of lipsum", "{{ lipsum.__globals__ }}"),
    ("template self", "{{ self._TemplateReference__context }}"),
    ("record internals", "{{ record.__init__.__globals__['os'].environ }}"),
    ("format string attribute walk", "{{ '{0.__class__.__init__.__globals__}'.format(record) }}"),
    ("mutating a list", "{% set l = [1] %}{{ l.append(2) }}{{ l }}"),
    ("subclasses loop", "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}"),
    ("environment not allow-listed", "{{ env.PPW_PP_CLIENT_SECRET }}"),
    ("huge string", "{{ 'x' * 10**9 }}"),
    ("huge loop", "{% for i in range(10**6) %}{% for j in range(10**6) %}{% endfor %}{% endfor %}"),
]

#: (name, template, record) attempts where the record's data picks what to reach for.
STEERED = [
    ("attr filter by record value", "{{ record | attr(record.name) }}", {"name": "__class__"}),
    ("format string from record", "{{ ('{0.' ~ record.name ~ '}').format(record) }}", {"name": "__class__"}),
    ("item lookup by record value", "{{ record[record.name] }}", {"name": "__dict__"}),
    ("record text as a template", "{{ record.name }}", {"name": "{{ 7 * 191 }}{{ ''.__class__ }}"}),
]

LEAKS = ("<class", "<module", "<function", "<built-in", "environ(", "__globals__':", SECRET)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.setenv("PPW_PP_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("PPW_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.delenv("PPW_ENV_ALLOWLIST", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def _rule(tmp_path: Path, template: str) -> Path:
    path = tmp_path / "rule.yaml"
    body = json.dumps(template)  # a JSON string is a valid YAML double-quoted scalar
    path.write_text(
        "id: probe\ntrigger: {resource: matters, on: created}\nsteps:\n"
        f"  - type: log\n    with:\n      message: {body}\n"
    )
    return path


def _record(tmp_path: Path, extra: dict[str, str]) -> Path:
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"id": "m-1", "display_name": "Doe v. Roe", "status": "Open", **extra}))
    return path


def _assert_no_leak(output: str) -> None:
    for leak in LEAKS:
        assert leak not in output, f"{leak!r} leaked:\n{output}"
    assert os.environ.get("HOME", "/root") not in output.replace("/tmp", "")


@pytest.mark.parametrize(("name", "template"), WRITTEN, ids=[n for n, _ in WRITTEN])
def test_written_escapes_are_refused(cli: CliRunner, tmp_path: Path, name: str, template: str) -> None:
    rule = _rule(tmp_path, template)
    checked = cli.invoke(app, ["rules", "check", str(rule)])
    started = time.monotonic()
    tested = cli.invoke(app, ["rules", "test", str(rule), "--record", str(_record(tmp_path, {})),
                              "--resource", "matters"])  # fmt: skip
    assert time.monotonic() - started < 10, "bounded: one rule cannot stall the worker"
    refused_at_load = checked.exit_code != 0 and "error" in checked.output
    refused_at_render = "error" in tested.output and "✘" in tested.output
    assert refused_at_load or refused_at_render, f"{name} was not refused:\n{checked.output}\n{tested.output}"
    _assert_no_leak(checked.output + tested.output)


@pytest.mark.parametrize(("name", "template", "record"), STEERED, ids=[n for n, _, _ in STEERED])
def test_data_steered_escapes_fail_the_step(
    cli: CliRunner, tmp_path: Path, name: str, template: str, record: dict[str, str]
) -> None:
    rule = _rule(tmp_path, template)
    tested = cli.invoke(app, ["rules", "test", str(rule), "--record", str(_record(tmp_path, record)),
                              "--resource", "matters"])  # fmt: skip
    _assert_no_leak(tested.output)
    if name == "record text as a template":
        # data is never evaluated as a template: it is printed as the text it is
        assert "message: {{ 7 * 191 }}{{ ''.__class__ }}" in tested.output, tested.output
        assert "1337" not in tested.output
    else:
        assert "✘" in tested.output and "error" in tested.output, tested.output
