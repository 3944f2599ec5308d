"""The README stays truthful: its rules load cleanly and its commands exist in the CLI."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer

from worker.cli import app

from .conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)


def rule_examples() -> list[str]:
    return [body for lang, body in BLOCKS if lang == "yaml" and "trigger:" in body]


def command_lines() -> list[str]:
    lines = []
    for lang, body in BLOCKS:
        if lang in ("sh", "bash", "console", ""):
            for line in body.splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith("ppw "):
                    lines.append(line.split("#", 1)[0].strip())
    return lines


def test_quick_start_is_exactly_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```sh\n(.*?)```", quick, re.S)
    assert block is not None
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize("text", rule_examples(), ids=lambda t: t.split("\n", 1)[0])
def test_rule_examples_load_without_diagnostics(text: str) -> None:
    try:
        from worker.rules.loader import load_text
    except ImportError:
        pytest.skip("the rules loader is not there yet")
    loaded = load_text(text, "README.md")
    assert loaded.diagnostics == []
    assert len(loaded.rules) == 1


def test_every_step_type_has_an_example() -> None:
    from worker.actions.base import registry, shorthands

    shown = set(re.findall(r"type: ([\w.]+)", "\n".join(rule_examples())))
    assert set(registry()) <= shown
    assert shown & set(shorthands())


def problems(line: str) -> list[str]:
    """What in a ``ppw ...`` command line the CLI does not have (empty when it all exists)."""
    # Typer may ship its own copy of click, so groups are recognised by their ``commands``.
    command: Any = typer.main.get_command(app)
    words = shlex.split(line)[1:]
    for word in words:
        if not hasattr(command, "commands") or word.startswith("-"):
            break
        command = command.commands.get(word)
        if command is None:
            return [f"no command {word!r}"]
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    return [f"no option {w}" for w in words if w.startswith("--") and w.split("=", 1)[0] not in options]


@pytest.mark.parametrize("line", command_lines())
def test_commands_in_the_readme_exist(line: str) -> None:
    assert problems(line) == []


def test_the_command_check_can_fail() -> None:
    assert problems("ppw auth frobnicate") == ["no command 'frobnicate'"]
    assert problems("ppw auth login --frobnicate") == ["no option --frobnicate"]
