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


def test_a_rule_that_steals_an_id_is_rejected(registry: RuleRegistry, rules_dir: Path) -> None:
    registry.load()
    (rules_dir / "b.yaml").write_text(RULE.format(id="alpha", message="impostor"))
    registry.reload_paths([rules_dir / "b.yaml"])
    assert [r.id for r in registry.ruleset] == ["alpha"], "beta is no longer in b.yaml: retired"
    (error,) = registry.status()["errors"]
    assert "duplicate rule id 'alpha'" in error["message"] and error["file"].endswith("b.yaml")
    assert rendered(registry, "alpha") == "one", "the rule in force keeps its id"
    assert [b["rule"] for b in registry.status()["broken"]] == ["alpha"]


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


PAIR = """\
- id: keeper
  trigger: {resource: matters, on: updated}
  steps:
    - type: log
      with: {message: "KEEPER"}
- id: neighbour
  trigger: {resource: matters, on: updated}
  steps:
    - type: log
      with: {message: "NEIGHBOUR"}
"""


def _gauge(name: str) -> float | None:
    from worker.observability.exposition import collecting_registry

    return collecting_registry().get_sample_value(name)


def test_a_broken_rule_keeps_its_last_good_version_while_its_neighbour_changes(
    registry: RuleRegistry, rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pair = rules_dir / "pair.yaml"
    pair.write_text(PAIR)
    registry.load()
    keeper_version = registry.ruleset.get("keeper").version  # type: ignore[union-attr]

    pair.write_text(
        PAIR.replace('"KEEPER"', '"{{ record.stauts }}"').replace('"NEIGHBOUR"', '"neighbour v2"')
    )
    with caplog.at_level("ERROR", logger="worker.rules.watcher"):
        registry.reload_paths([pair])

    assert rendered(registry, "keeper") == "KEEPER", "the broken rule's last good version runs"
    assert registry.ruleset.get("keeper").version == keeper_version  # type: ignore[union-attr]
    assert rendered(registry, "neighbour") == "neighbour v2", "the neighbour's edit took effect"
    status = registry.status()
    assert status["loaded"] == 4 and status["failed_files"] == [status["errors"][0]["file"]]
    (broken,) = status["broken"]
    assert (broken["rule"], broken["line"], broken["column"], broken["kept"]) == ("keeper", 5, 34, ["keeper"])
    assert _gauge("ppw_rule_errors") == 1 and _gauge("ppw_rule_load_errors") == 1
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "pair.yaml:5:34: error: unknown field 'stauts' on matters" in record.getMessage()
    assert "[rule keeper]" in record.getMessage() and "last good version keeps running" in record.getMessage()

    pair.write_text(PAIR.split("- id: neighbour")[0])  # the neighbour removed, the keeper fixed
    registry.reload_paths([pair])
    assert registry.ruleset.get("neighbour") is None, "a rule removed from its file goes away"
    assert registry.status()["broken"] == [] and _gauge("ppw_rule_errors") == 0
    assert sorted(r.id for r in registry.ruleset) == ["alpha", "beta", "keeper"]


def test_a_removed_broken_rule_goes_away_and_a_new_broken_rule_is_just_an_error(
    registry: RuleRegistry, rules_dir: Path
) -> None:
    pair = rules_dir / "pair.yaml"
    pair.write_text(PAIR)
    registry.load()
    # keeper broken (keeps running), then renamed while still broken: the old keeper is retired
    pair.write_text(PAIR.replace('type: log\n      with: {message: "KEEPER"}', "type: lgo\n      with: {}"))
    registry.reload_paths([pair])
    assert registry.ruleset.get("keeper") is not None
    pair.write_text(PAIR.replace("id: keeper", "id: newcomer").replace('"KEEPER"', '"{{ nope }}"'))
    registry.reload_paths([pair])
    assert registry.ruleset.get("keeper") is None and registry.ruleset.get("newcomer") is None
    (broken,) = registry.status()["broken"]
    assert broken["rule"] == "newcomer" and broken["kept"] == []
    assert rendered(registry, "neighbour") == "NEIGHBOUR"


def test_a_file_that_no_longer_parses_keeps_each_rule_it_had(registry: RuleRegistry, rules_dir: Path) -> None:
    pair = rules_dir / "pair.yaml"
    pair.write_text(PAIR)
    registry.load()
    pair.write_text(
        PAIR.replace("  trigger: {resource: matters, on: updated}\n", "  trigger: {resource: matters\n", 1)
    )
    registry.reload_paths([pair])
    assert rendered(registry, "keeper") == "KEEPER" and rendered(registry, "neighbour") == "NEIGHBOUR"
    (broken,) = registry.status()["broken"]
    assert broken["rule"] is None and broken["kept"] == ["keeper", "neighbour"]
    assert "YAML syntax" in broken["message"]


def test_the_rescan_after_start_does_not_repeat_known_errors(
    registry: RuleRegistry, rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (rules_dir / "bad.yaml").write_text(RULE.format(id="bad", message="{{ record.stauts }}"))
    with caplog.at_level("ERROR", logger="worker.rules.watcher"):
        registry.load()
        registry.load(repeat_known=False)
        assert len([r for r in caplog.records if "rule error" in r.getMessage()]) == 1
        registry.load()
        assert len([r for r in caplog.records if "rule error" in r.getMessage()]) == 2, (
            "a reload says it again"
        )
