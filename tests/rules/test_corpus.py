"""Broken rule files are rejected at the right line and column with a useful message; valid ones
load with no diagnostic at all.

Each file under ``broken/`` states what must be reported, in its own header::

    # expect: 14:14: unknown field 'stauts' on matters

(``line:column: text``, the text found in the message or its hint). A file may expect several.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.rules.conftest import BROKEN, VALID, make_settings
from worker.rules.loader import load_rules

EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$", re.M)


def _expectations(path: Path) -> list[tuple[int, int, str]]:
    return [(int(line), int(col), text.strip()) for line, col, text in EXPECT.findall(path.read_text())]


@pytest.mark.parametrize("path", sorted(BROKEN.glob("*.yaml")), ids=lambda p: p.stem)
def test_broken_file_is_rejected_at_the_right_place(path: Path) -> None:
    expected = _expectations(path)
    assert expected, f"{path.name} states no expectation"
    ruleset = load_rules([path], settings=make_settings())
    errors = [d for d in ruleset.diagnostics if d.is_error]
    assert len(ruleset) == 0, "every rule of these files has an error, so none loads"
    assert {e for b in ruleset.broken for e in b.errors} == set(errors), "each error belongs to a rule"
    shown = "\n".join(d.format() for d in errors)
    for line, column, text in expected:
        hits = [
            d
            for d in errors
            if d.line == line and d.column == column and (text in d.message or text in (d.hint or ""))
        ]
        assert hits, f"expected {path.name}:{line}:{column}: {text}\ngot:\n{shown}"
        assert all(d.file.endswith(path.name) for d in hits)


@pytest.mark.parametrize("path", sorted(BROKEN.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_error_has_a_position_and_formats_like_a_compiler(path: Path) -> None:
    for diagnostic in load_rules([path], settings=make_settings()).diagnostics:
        assert diagnostic.line >= 1 and diagnostic.column >= 1
        assert re.match(r"^.+\.yaml:\d+:\d+: (error|warning): .+", diagnostic.format())


def test_hints_name_the_right_spelling() -> None:
    ruleset = load_rules([BROKEN / "fields-typos.yaml"], settings=make_settings())
    formatted = [d.format() for d in ruleset.diagnostics]
    assert any(
        line.endswith(
            "fields-typos.yaml:14:14: error: unknown field 'stauts' on matters (hint: did you mean 'status'?)"
        )
        for line in formatted
    ), formatted
    assert any(
        "'Closd' is not a valid status of matters (hint: did you mean 'Closed'?)" in f for f in formatted
    )


@pytest.mark.parametrize("path", sorted(VALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_valid_file_passes_unchanged(path: Path) -> None:
    before = path.read_bytes()
    ruleset = load_rules([path], settings=make_settings())
    assert [d.format() for d in ruleset.diagnostics] == []
    assert len(ruleset) >= 1
    assert path.read_bytes() == before


def test_duplicate_rule_ids_across_files_are_rejected(tmp_path: Path) -> None:
    rule = "id: {id}\ntrigger: {{resource: matters}}\nsteps: [{{type: log, with: {{message: hi}}}}]\n"
    (tmp_path / "a.yaml").write_text(rule.format(id="same"))
    (tmp_path / "b.yaml").write_text("# second file\n" + rule.format(id="same"))
    (tmp_path / "c.yaml").write_text(rule.format(id="other"))
    ruleset = load_rules([tmp_path], settings=make_settings())
    errors = [d for d in ruleset.diagnostics if d.is_error]
    assert len(errors) == 1
    assert errors[0].file.endswith("b.yaml") and (errors[0].line, errors[0].column) == (2, 5)
    assert "duplicate rule id 'same'" in errors[0].message and "a.yaml:1:1" in (errors[0].hint or "")
    assert sorted(r.id for r in ruleset) == ["other", "same"]
    assert next(r for r in ruleset if r.id == "same").file.endswith("a.yaml")


def test_a_bad_file_never_stops_the_others(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(
        "id: good\ntrigger: {resource: matters}\nsteps: [{type: log, with: {message: hi}}]\n"
    )
    (tmp_path / "bad.yaml").write_text("id: bad\ntrigger: {resource: matters\n")
    ruleset = load_rules([tmp_path], settings=make_settings())
    assert [r.id for r in ruleset] == ["good"]
    assert [d.file.rsplit("/", 1)[-1] for d in ruleset.errors] == ["bad.yaml"]


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    ruleset = load_rules([tmp_path / "nope"], settings=make_settings())
    assert ruleset.errors and "no such file" in ruleset.errors[0].message


def test_swallowed_comment_text_is_a_warning_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "comment.yaml"
    path.write_text(
        "id: c\ndescription: Tell #billing about it\ntrigger: {resource: matters}\n"
        "steps: [{type: log, with: {message: hi}}]\n"
    )
    ruleset = load_rules([path], settings=make_settings())
    assert [r.id for r in ruleset] == ["c"]
    (warning,) = ruleset.diagnostics
    assert (warning.severity, warning.line, warning.column) == ("warning", 2, 19)
    assert "YAML comment" in warning.message


@pytest.mark.parametrize("path", sorted(BROKEN.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_error_carries_a_hint(path: Path) -> None:
    for diagnostic in load_rules([path], settings=make_settings()).diagnostics:
        assert diagnostic.hint, diagnostic.format()
