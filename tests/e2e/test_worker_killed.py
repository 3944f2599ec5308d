"""A worker killed with SIGKILL in the middle of a step → another worker finishes the run → exactly
one task in PracticePanther. Real `ppw worker` processes on Redis, a slow sandbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from tests.e2e.conftest import Scenario, eventually

PPW = str(Path(sys.executable).with_name("ppw"))


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[dict[str, str], str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [PPW, "worker", "--no-http", "--threads", "2"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_sigkill_mid_step_leaves_exactly_one_task(
    scenario_factory: Callable[..., Scenario],
    workers: Callable[[dict[str, str], str], subprocess.Popen[bytes]],
    redis_url: str,
    tmp_path: Path,
) -> None:
    scenario = scenario_factory(broker_url=redis_url, state_url=redis_url, http_timeout=4.0)
    scenario.prepare()
    env = {
        **os.environ,
        **scenario.env(),
        "PPW_HTTP_TIMEOUT": "4",
        # hand a dead worker's messages to another one within seconds, not a minute
        "PPW_BROKER_HEARTBEAT_TIMEOUT": "2",
        "PPW_BROKER_MAINTENANCE_CHANCE": "1000000",
        "PPW_RUN_LEASE": "3",
        "PPW_RETRY_BASE": "0.2",
        "PPW_RETRY_MAX": "2",
        "PPW_LOG_LEVEL": "INFO",
    }
    scenario.poll()  # prime
    first = workers(env, "worker-a")

    since = scenario.admin.mark()
    scenario.admin.faults(latency=2.5)
    matter = scenario.close_matter()
    scenario.poll()

    def step_started() -> bool:
        runs = scenario.runs()
        return bool(runs and runs[0].steps) and runs[0].steps[0].status == "started"

    # The ledger says "started" just before the create is sent; the sandbox then holds it for
    # 2.5 s before storing the task. Killing A a second in leaves a task A never heard about.
    eventually(step_started, timeout=30, message="worker A to start the create step")
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    scenario.admin.faults(latency=0)
    [run] = scenario.runs()
    assert run.status == "running" and run.steps[0].status == "started"

    second = workers(env, "worker-b")
    [done] = scenario.wait_runs(1, timeout=60)
    closing = [t for t in scenario.tasks_for(matter["id"]) if t["subject"].startswith("Send closing letter")]
    assert len(closing) == 1, closing
    # worker B saw the step started but unfinished, so it looked for A's task by its marker first
    calls = scenario.admin.requests(since)["requests"]
    lookups = [
        c
        for c in calls
        if c["method"] == "GET" and c["path"] == "/api/v2/tasks" and "[ppw:" in unquote_plus(c["query"])
    ]
    assert lookups, calls
    assert done.steps[0].attempts == 2 and done.steps[0].response is not None
    # whether A's create landed (B then reuses it) or died with A (B creates it), there is one task
    [message] = scenario.slack.wait_for(1, "/hooks/T1/B1/billing-secret")
    assert closing[0]["id"] in message.json["text"]

    # SIGTERM: graceful, prompt exit
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0, (tmp_path / "worker-b.log").read_text()[-3000:]
