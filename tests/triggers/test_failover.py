"""Two scheduler replicas share Redis; the leader is killed mid-way; every slot still runs once.

Each replica is a real process (the poll scheduler's lease plus the schedule runner, as in
``ppw run``) emitting into a Redis broker; this test's process runs the workers. The replicas'
clocks run 60 times faster, so ``every: 1m`` fires every second.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from tests.e2e.conftest import Scenario, eventually

BILLING = "/hooks/T1/B1/billing-secret"

EVERY_MINUTE = """\
- id: minutely
  trigger: {every: 1m}
  steps:
    - type: slack.post
      with: {webhook: billing, text: "{{ slot | utc | isoformat }}"}
"""


class Replica:
    def __init__(self, env: dict[str, str], epoch: float, start: dt.datetime) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.triggers.scheduler_replica", repr(epoch), start.isoformat(), "60"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.strip())

    @property
    def leading(self) -> bool:
        states = [json.loads(line)["leader"] for line in self.lines if line.startswith("{")]
        return bool(states) and states[-1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def test_every_slot_runs_once_across_a_leader_failover(
    pipeline: Callable[..., Scenario], redis_url: str
) -> None:
    scenario = pipeline(EVERY_MINUTE, broker_url=redis_url)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PPW_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env |= scenario.env() | {"PPW_TIMEZONE": "UTC", "PPW_LOG_LEVEL": "WARNING"}
    epoch, start = time.time(), dt.datetime(2026, 4, 15, 10, 0, 30, tzinfo=dt.UTC)

    def posted() -> list[str]:
        return [r.json["text"] for r in scenario.slack.received(BILLING)]

    first = Replica(env, epoch, start)
    second: Replica | None = None
    try:
        eventually(lambda: first.leading, 30, "the first replica to lead")
        second = Replica(env, epoch, start)
        eventually(lambda: second is not None and len(second.lines) > 0, 30, "the second replica to start")
        assert not second.leading
        eventually(lambda: len(posted()) >= 3, 30, "three slots from the first leader")
        first.stop()  # SIGKILL: no clean hand-over, the lease has to lapse
        before = len(posted())
        eventually(lambda: second is not None and second.leading, 30, "the second replica to take over")
        eventually(lambda: len(posted()) >= before + 3, 30, "three slots from the new leader")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    texts = posted()
    assert len(texts) == len(set(texts)), f"a slot was posted twice: {texts}"
    slots = [dt.datetime.fromisoformat(t) for t in texts]
    assert slots == sorted(slots)
    assert all(s.second == 0 for s in slots)
    # slots that passed during the hand-over are caught up once (the latest), never repeated
    gaps = [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(slots)]
    assert max(gaps) <= 5, gaps
    runs = scenario.wait_runs(len(texts))
    assert len(scenario.runs()) == len(runs) == len(texts)
    assert len({r.event_id for r in runs}) == len(texts)
