"""Hot reload: a changed file is checked first, a bad one is reported while its last good version
keeps running, and every rule carries the version that is running."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.rules.conftest import make_settings
from worker.events import Change, Event
from worker.rules.ruleset import RuleSet
from worker.rules.watcher import RuleRegistry

RULE = """\
id: {id}
trigger: {{resource: matters, on: updated}}
steps:
  - type: log
    with: {{message: "{message}"}}
"""

EVENT = Event.build(
    type="updated",
    resource="matters",
    record_id="m-1",
    revision="r1",
    record={"id": "m-1", "status": "Closed"},
    changes={"status": Change(old="Open", new="Closed")},
)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met before the deadline")


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "a.yaml").write_text(RULE.format(id="alpha", message="one"))
    (directory / "b.yaml").write_text(RULE.format(id="beta", message="two"))
    return directory


@pytest.fixture
def registry(rules_dir: Path) -> Iterator[RuleRegistry]:
    registry = RuleRegistry(rules_dir, settings=make_settings(rules_dir=rules_dir))
    yield registry
    registry.stop()


def rendered(registry: RuleRegistry, rule_id: str) -> str:
    engine = registry.engine
    return str(engine.render_step(rule_id, 0, engine.context(rule_id, EVENT))["message"])


def test_load_reports_status(registry: RuleRegistry) -> None:
    registry.load()
    status = registry.status()
    assert (status["loaded"], status["files"], status["errors"], status["failed_files"]) == (2, 2, [], [])
    assert set(status["rules"]) == {"alpha", "beta"} and status["version"] == registry.ruleset.version
    assert [m.rule.id for m in registry.engine.match(EVENT)] == ["alpha", "beta"]


def test_a_bad_edit_keeps_the_last_good_version(registry: RuleRegistry, rules_dir: Path) -> None:
    registry.load()
    good_version = registry.ruleset.get("alpha").version  # type: ignore[union-attr]
    (rules_dir / "a.yaml").write_text(RULE.format(id="alpha", message="{{ record.stauts }}"))
    registry.reload_paths([rules_dir / "a.yaml"])
    status = registry.status()
    assert status["loaded"] == 2 and len(status["failed_files"]) == 1
    (error,) = status["errors"]
    assert error["file"].endswith("a.yaml") and (error["line"], error["column"]) == (5, 32)
    assert "unknown field 'stauts' on matters" in error["message"]
    assert registry.ruleset.get("alpha").version == good_version  # type: ignore[union-attr]
    assert rendered(registry, "alpha") == "one"

    (rules_dir / "a.yaml").write_text(RULE.format(id="alpha", message="fixed {{ record.status }}"))
    registry.reload_paths([rules_dir / "a.yaml"])
    assert registry.status()["errors"] == []
    assert registry.ruleset.get("alpha").version != good_version  # type: ignore[union-attr]
    assert rendered(registry, "alpha") == "fixed Closed"


def test_a_file_that_steals_an_id_is_rejected(registry: RuleRegistry, rules_dir: Path) -> None:
    registry.load()
    (rules_dir / "b.yaml").write_text(RULE.format(id="alpha", message="impostor"))
    registry.reload_paths([rules_dir / "b.yaml"])
    assert sorted(r.id for r in registry.ruleset) == ["alpha", "beta"]
    (error,) = registry.status()["errors"]
    assert "duplicate rule id 'alpha'" in error["message"] and error["file"].endswith("b.yaml")
    assert rendered(registry, "alpha") == "one" and rendered(registry, "beta") == "two"


def test_deleted_and_new_files(registry: RuleRegistry, rules_dir: Path) -> None:
    seen: list[RuleSet] = []
    registry.subscribe(seen.append)
    registry.load()
    (rules_dir / "b.yaml").unlink()
    (rules_dir / "c.yml").write_text(RULE.format(id="gamma", message="three"))
    registry.reload_paths([rules_dir / "b.yaml", rules_dir / "c.yml"])
    assert sorted(r.id for r in registry.ruleset) == ["alpha", "gamma"]
    assert [sorted(r.id for r in s) for s in seen][-1] == ["alpha", "gamma"]
    registry.reload_paths([rules_dir / "c.yml"])  # unchanged: no new rule set published
    assert len(seen) == 2


def test_missing_directory_is_reported(tmp_path: Path) -> None:
    registry = RuleRegistry(tmp_path / "nowhere", settings=make_settings())
    registry.load()
    status = registry.status()
    assert status["loaded"] == 0 and "rules directory not found" in status["errors"][0]["message"]


def test_watching_picks_up_changes(registry: RuleRegistry, rules_dir: Path) -> None:
    registry.start(debounce_ms=50)
    assert registry.status()["loaded"] == 2
    (rules_dir / "c.yaml").write_text(RULE.format(id="gamma", message="three"))
    wait_for(lambda: registry.ruleset.get("gamma") is not None)
    (rules_dir / "a.yaml").write_text("id: alpha\ntrigger: {resource: matters\n")
    wait_for(lambda: bool(registry.status()["failed_files"]))
    assert registry.ruleset.get("alpha") is not None  # last good version still runs
    assert rendered(registry, "alpha") == "one"
    (rules_dir / "c.yaml").unlink()
    wait_for(lambda: registry.ruleset.get("gamma") is None)
    registry.stop()
