"""A matter closed in PracticePanther → one closing task in the sandbox and one Slack message,
on the embedded memory broker, on Redis and on RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.conftest import Scenario
from worker.delivery.history import Run


def _brokers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    kind = request.param
    if kind == "memory":
        return "memory://", f"sqlite:///{tmp_path_factory.mktemp('state')}/state.db"
    redis_url = request.getfixturevalue("redis_url")
    if kind == "redis":
        return redis_url, redis_url
    return request.getfixturevalue("rabbitmq_url"), redis_url


@pytest.fixture(params=["memory", "redis", "rabbitmq"])
def urls(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return _brokers(request, tmp_path_factory)


def test_matter_closed_creates_a_task_and_posts_to_slack(
    scenario_factory: Callable[..., Scenario], urls: tuple[str, str]
) -> None:
    broker_url, state_url = urls
    scenario = scenario_factory(broker_url=broker_url, state_url=state_url)
    scenario.start()
    scenario.poll()  # first poll primes: nothing fires
    matter = scenario.close_matter()
    scenario.poll()

    [run] = scenario.wait_runs(1)
    tasks = scenario.tasks_for(matter["id"])
    closing = [t for t in tasks if t["subject"].startswith("Send closing letter")]
    assert len(closing) == 1
    [message] = scenario.slack.wait_for(1, "/hooks/T1/B1/billing-secret")
    assert message.json["text"] == f"{matter['display_name']} closed; closing task {closing[0]['id']}"

    assert isinstance(run, Run)
    assert run.rule_id == "closed-matter-followup" and run.event.record_id == matter["id"]
    assert [s.status for s in run.steps] == ["done", "done"]
    assert run.steps[0].response and run.steps[0].response["id"] == closing[0]["id"]
    assert run.steps[1].request == {"webhook": "billing", "payload": {"text": message.json["text"]}}

    # polling again sees our own task write but nothing fires twice
    scenario.poll()
    scenario.poll("tasks")
    assert len(scenario.runs()) == 1
    assert len(scenario.slack.received("/hooks/T1/B1/billing-secret")) == 1
