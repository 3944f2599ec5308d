"""`ppw run` as an operator starts it serves ``/hooks/<name>`` and runs the schedule triggers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.conftest import Scenario, eventually
from tests.fixtures.client import free_port
from tests.triggers.conftest import SECRET
from worker.actions.signing import sign
from worker.triggers.schedules import cursor_key

PPW = str(Path(sys.executable).with_name("ppw"))
BILLING = "/hooks/T1/B1/billing-secret"

RULES = """\
- id: intake-relay
  trigger: {webhook: intake}
  steps:
    - type: slack.post
      with: {webhook: billing, text: "form from {{ payload.name }}"}
- id: hourly
  trigger: {every: 1h}
  steps: [{type: log, with: {message: "{{ slot }}"}}]
"""


def test_ppw_run_accepts_webhooks_and_leads_the_schedules(
    pipeline: Callable[..., Scenario], tmp_path: Path, connection_id: str
) -> None:
    scenario = pipeline(RULES, start=False)
    port = free_port()
    inherited = os.environ.items()
    env = {k: v for k, v in inherited if not k.startswith("PPW_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= scenario.env() | {
        "PPW_BROKER_URL": "memory://",
        "PPW_WEBHOOK_SECRETS__INTAKE": SECRET,
        "PPW_POLL_INTERVAL": "5",
        "PPW_SHUTDOWN_GRACE": "5",
    }
    log = (tmp_path / "ppw-run.log").open("wb")
    process = subprocess.Popen(
        [PPW, "run", "--http-port", str(port), "--threads", "2"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _answers(f"{base}/healthz"), 30, "ppw run to serve HTTP")
        body = b'{"name": "Quinn"}'
        answer = httpx.post(
            f"{base}/hooks/intake",
            content=body,
            headers={"Content-Type": "application/json", "X-PPW-Signature": sign(SECRET, body)},
        )
        assert answer.status_code == 202, answer.text
        (post,) = scenario.slack.wait_for(1, BILLING, timeout=30)
        assert post.json["text"] == "form from Quinn"
        unsigned = httpx.post(f"{base}/hooks/intake", json={"name": "Mallory"})
        assert unsigned.status_code == 401
        # the schedule runner leads beside the poll scheduler: it has seen the rule
        eventually(
            lambda: scenario.store.get(cursor_key(connection_id, "hourly")) is not None,
            30,
            "the schedule cursor of 'hourly'",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(20)
        log.close()
    output = (tmp_path / "ppw-run.log").read_text()
    assert code == 0, output[-3000:]
    assert SECRET not in output


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        time.sleep(0.1)
        return False
