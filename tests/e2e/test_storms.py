"""A 5xx/429 storm from PracticePanther and Slack: every run finishes, nothing is done twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Scenario, eventually
from tests.fixtures.stubs import Reply

MATTERS = 6


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_storm_every_run_finishes_once(
    scenario_factory: Callable[..., Scenario],
    kind: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if kind == "memory":
        broker_url, state_url = "memory://", f"sqlite:///{tmp_path_factory.mktemp('state')}/state.db"
    else:
        broker_url = state_url = redis_url
    scenario = scenario_factory(broker_url=broker_url, state_url=state_url)
    scenario.start(threads=6)
    scenario.poll()
    matters = scenario.close_matters(MATTERS)
    hook = "/hooks/T1/B1/billing-secret"
    scenario.slack.script(hook, *[Reply(429, "rate_limited", {"Retry-After": "1"})] * 3, Reply(500, "oops"))
    scenario.admin.faults(rate_5xx=0.3, rate_429=0.3, retry_after=1)

    def poll_through_the_storm() -> bool:
        try:
            scenario.poll()
        except Exception:
            return False
        return True

    eventually(poll_through_the_storm, timeout=30, message="a poll to get through the storm")
    runs = scenario.wait_runs(MATTERS, timeout=90)
    scenario.admin.faults(rate_5xx=0, rate_429=0)

    assert sorted(r.event.record_id for r in runs) == sorted(m["id"] for m in matters)
    assert any(r.attempts > 1 for r in runs), "the storm should have made some runs retry"
    per_matter = Counter(
        t["matter_ref"]["id"]
        for m in matters
        for t in scenario.tasks_for(m["id"])
        if t["subject"].startswith("Send closing letter")
    )
    assert per_matter == {m["id"]: 1 for m in matters}
    delivered = Counter(r.json["text"] for r in scenario.slack.received(hook) if r.status == 200)
    assert sorted(delivered.values()) == [1] * MATTERS  # each matter announced once, despite 429/500
    assert len(scenario.runs(status="dead")) == 0
