"""`ppw scheduler` as a deployment runs it: shared broker, probes on /healthz and /readyz, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.e2e.conftest import eventually
from worker.sandbox import SandboxServer

PPW = str(Path(sys.executable).with_name("ppw"))


def _health_url(log: Path) -> str | None:
    found = re.search(r"health and metrics on (http://\S+)", log.read_text(errors="replace"))
    return found.group(1) if found else None


def test_scheduler_serves_probes_and_stops_on_sigterm(
    sandbox: SandboxServer, redis_url: str, tmp_path: Path, connection_id: str
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PPW_") and name != "PROMETHEUS_MULTIPROC_DIR"
    } | {
        "PPW_PP_BASE_URL": sandbox.url,
        "PPW_PP_CLIENT_ID": sandbox.config.client_id,
        "PPW_PP_CLIENT_SECRET": sandbox.config.client_secret,
        "PPW_CONNECTION_ID": connection_id,
        "PPW_BROKER_URL": redis_url,
        "PPW_STATE_URL": redis_url,
        "PPW_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "PPW_RULES_DIR": str(rules),
        "PPW_POLL_RESOURCES": "matters",
        "PPW_POLL_INTERVAL": "1",
        "PPW_SHUTDOWN_GRACE": "5",
    }
    log = tmp_path / "scheduler.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PPW, "scheduler", "--http-port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(lambda: _health_url(log) is not None, timeout=30, message="the health server to start")
        url = _health_url(log)
        assert url is not None
        assert httpx.get(f"{url}/healthz").status_code == 200
        ready = httpx.get(f"{url}/readyz")
        # nobody logged in to the sandbox: the token check must turn readiness red, and say why
        assert ready.status_code == 503
        assert "token" in ready.json()["checks"]
        assert ready.json()["checks"]["state"]["ok"] is True
        assert "ppw_" in httpx.get(f"{url}/metrics").text
    finally:
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = process.wait(20)
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert time.monotonic() - started < 10
    assert sandbox.config.client_secret not in output
