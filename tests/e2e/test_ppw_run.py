"""`ppw run` as an operator starts it: embedded defaults, polls, runs rules, stops on SIGTERM.

Also: work recorded in the state store but lost with the in-process broker (a stopped `ppw run`,
a `ppw poll once`) is picked up when the embedded runtime starts again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import CLOSED_MATTER_RULE, Scenario, eventually
from tests.fixtures.client import SandboxAdmin, connect, sandbox_settings
from tests.fixtures.stubs import StubServer
from worker.delivery.runtime import Runtime
from worker.practicepanther.client import PracticePantherClient
from worker.sandbox import SandboxServer
from worker.state import open_store

PPW = str(Path(sys.executable).with_name("ppw"))


def test_ppw_run_embedded_end_to_end_and_graceful_stop(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "closing.yaml").write_text(CLOSED_MATTER_RULE)
    # the embedded state lives in ./.ppw/state.db: log in into that file first
    settings = sandbox_settings(sandbox, f"sqlite:///{tmp_path}/.ppw/state.db", connection_id)
    store = open_store(settings.state_url)
    connect(settings, store)
    with PracticePantherClient(settings, store) as client:
        matter = next(iter(client.list("matters", filter="status eq 'Open'", limit=1)))
    store.close()
    admin = SandboxAdmin(sandbox.url)
    hook = "/hooks/T9/B9/run-secret"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PPW_") and name != "PROMETHEUS_MULTIPROC_DIR"
    } | {
        "PPW_PP_BASE_URL": settings.pp_base_url,
        "PPW_PP_CLIENT_ID": settings.pp_client_id,
        "PPW_PP_CLIENT_SECRET": settings.pp_client_secret.get_secret_value(),
        "PPW_CONNECTION_ID": connection_id,
        "PPW_RULES_DIR": str(rules),
        "PPW_POLL_INTERVAL": "1",
        "PPW_POLL_JITTER": "0",
        "PPW_RATE_LIMIT_PER_SECOND": "100",
        "PPW_SHUTDOWN_GRACE": "5",
        "PPW_SLACK_WEBHOOKS__BILLING": f"{slack_stub.url}{hook}",
    }
    log = (tmp_path / "ppw-run.log").open("wb")
    process = subprocess.Popen(
        [PPW, "run", "--http-port", "0", "--threads", "2"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        since = admin.mark()
        # two polls of matters seen: the first primed (no firing), so a change now is detected
        eventually(
            lambda: sum(r["path"] == "/api/v2/matters" for r in admin.requests(since)["requests"]) >= 2,
            timeout=30,
            message="two polls of matters",
        )
        admin.mutate(
            [{"op": "update", "resource": "matters", "id": matter["id"], "data": {"status": "Closed"}}]
        )
        [message] = slack_stub.wait_for(1, hook, timeout=30)
        assert matter["display_name"] in message.json["text"]
    finally:
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = process.wait(20)
        output = (tmp_path / "ppw-run.log").read_text()
        admin.http.close()
    assert code == 0, output[-3000:]
    assert time.monotonic() - started < 10
    assert "embedded mode" in output
    assert settings.pp_client_secret.get_secret_value() not in output


def test_embedded_runtime_picks_up_work_left_in_the_state_store(
    scenario_factory: Callable[..., Scenario], tmp_path: Path
) -> None:
    state = f"sqlite:///{tmp_path}/state/state.db"
    scenario = scenario_factory(broker_url="memory://", state_url=state)
    first = scenario.prepare()
    scenario.poll()
    scenario.close_matter()
    scenario.poll()  # the event goes into a memory broker nobody works on...
    assert first.app.events.pending(scenario.connection)
    first.broker.close()  # ...and that process ends

    scenario.runtime = Runtime.create(
        scenario.settings, store=scenario.store, options=scenario.options, queue_prefix=scenario.queue_prefix
    )
    scenario.runtime.start_workers(2)
    [run] = scenario.wait_runs(1)
    assert run.status == "succeeded"
    assert not scenario.runtime.app.events.pending(scenario.connection)
