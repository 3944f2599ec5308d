""".env.example documents every setting, with a comment, and loads into valid default settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.settings import Settings

from .conftest import REPO

EXAMPLE = REPO / ".env.example"
ASSIGNMENT = re.compile(r"^#?(PPW_[A-Z0-9_]+?)(?:__[A-Z0-9_]+)?=")


def lines() -> list[str]:
    return EXAMPLE.read_text(encoding="utf-8").splitlines()


def documented() -> dict[str, int]:
    """Setting name -> line index of its first assignment (active or commented out)."""
    found: dict[str, int] = {}
    for index, line in enumerate(lines()):
        match = ASSIGNMENT.match(line)
        if match:
            found.setdefault(match.group(1), index)
    return found


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented_with_a_comment_above(field: str) -> None:
    name = f"PPW_{field.upper()}"
    found = documented()
    assert name in found, f"{name} is missing from .env.example"
    above = lines()[found[name] - 1]
    assert above.startswith("# ") and not ASSIGNMENT.match(above), f"{name} needs a one-line comment above it"
    assert len(above) > len("# ") + 10, f"the comment above {name} says nothing"


def test_no_unknown_settings() -> None:
    known = {f"PPW_{field.upper()}" for field in Settings.model_fields}
    assert set(documented()) <= known, "names in .env.example that Settings does not read"


def test_example_loads_as_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copied to .env unchanged, the example is valid and changes nothing."""
    import os

    for name in [n for n in os.environ if n.startswith("PPW_")]:
        monkeypatch.delenv(name)
    from_example = Settings(_env_file=EXAMPLE)
    defaults = Settings(_env_file=None)
    assert from_example.model_dump() == defaults.model_dump()


def test_commented_map_examples_are_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommenting the optional lines gives valid settings too (the documented syntax works)."""
    import os

    for name in [n for n in os.environ if n.startswith("PPW_")]:
        monkeypatch.delenv(name)
    uncommented = [
        line[1:] if line.startswith("#PPW_") and not line.endswith("=") else line for line in lines()
    ]
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(uncommented) + "\n", encoding="utf-8")
    settings = Settings(_env_file=env_file)
    assert settings.backfill_since == {"matters": "2026-01-01T00:00:00Z"}
    assert set(settings.slack_webhooks) == {"billing"}
    assert set(settings.teams_webhooks) == {"billing"}
    assert set(settings.webhook_secrets) == {"intake"}
    assert settings.smtp_url is not None and settings.smtp_url.get_secret_value().startswith("smtp://")
    assert settings.console_users["alice"].get_secret_value().startswith("operator:$argon2id$")
