"""The rule-matching benchmark runs and reports what it promises (no timing is asserted here)."""

from __future__ import annotations

from benchmarks.rule_matching import TARGET_EVENTS_PER_SECOND, build_events, build_rules, run


def test_benchmark_reports_throughput_with_100_rules() -> None:
    result = run(n_events=400, n_rules=100)
    assert result["rules"] == 100 and result["events"] == 400
    assert result["matches"] > 0
    assert result["events_per_second"] > 0 and result["bare_loop_events_per_second"] > 0
    assert result["target_events_per_second"] == TARGET_EVENTS_PER_SECOND
    assert isinstance(result["meets_target"], bool)


def test_benchmark_inputs_are_deterministic() -> None:
    assert [r.version for r in build_rules(20)] == [r.version for r in build_rules(20)]
    assert [e.id for e in build_events(50)] == [e.id for e in build_events(50)]
