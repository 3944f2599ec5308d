"""`ppw run` as an operator starts it: embedded defaults, polls, runs rules, stops on SIGTERM.

Also: work recorded in the state store but lost with the in-process broker (a stopped `ppw run`,
a `ppw poll once`) is picked up when the embedded runtime starts again; and SIGTERM stops it in
time even while its poll scheduler waits on a SQLite file another process has locked.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import CLOSED_MATTER_RULE, Scenario, eventually
from tests.fixtures.client import SandboxAdmin, connect, sandbox_settings
from tests.fixtures.stubs import StubServer
from worker.polling.scheduler import leader_key
from worker.practicepanther.client import PracticePantherClient
from worker.process.runtime import Runtime
from worker.sandbox import SandboxServer
from worker.state import open_store

PPW = str(Path(sys.executable).with_name("ppw"))


HOOK = "/hooks/T9/B9/run-secret"


def embedded_env(
    sandbox: SandboxServer,
    slack_stub: StubServer,
    tmp_path: Path,
    connection_id: str,
    rules_text: str = CLOSED_MATTER_RULE,
) -> tuple[dict[str, str], Path]:
    """The environment of `ppw run` with the embedded defaults, connected to the sandbox, with
    ``rules_text`` in ``rules/closing.yaml``; and its SQLite file."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "closing.yaml").write_text(rules_text)
    database = tmp_path / ".ppw" / "state.db"
    settings = sandbox_settings(sandbox, f"sqlite:///{database}", connection_id)
    store = open_store(settings.state_url)
    connect(settings, store)
    store.close()
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
        "PPW_SLACK_WEBHOOKS__BILLING": f"{slack_stub.url}{HOOK}",
    }
    return env, database


def start_embedded(
    sandbox: SandboxServer,
    slack_stub: StubServer,
    tmp_path: Path,
    connection_id: str,
    rules_text: str = CLOSED_MATTER_RULE,
) -> tuple[subprocess.Popen[bytes], Path]:
    """`ppw run` as the test above starts it, once it has polled twice; and its SQLite file."""
    env, database = embedded_env(sandbox, slack_stub, tmp_path, connection_id, rules_text)
    admin = SandboxAdmin(sandbox.url)
    since = admin.mark()
    with (tmp_path / "ppw-run.log").open("wb") as log:
        process = subprocess.Popen(
            [PPW, "run", "--http-port", "0", "--threads", "2"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(
            lambda: sum(r["path"] == "/api/v2/matters" for r in admin.requests(since)["requests"]) >= 2,
            timeout=30,
            message="two polls of matters",
        )
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        admin.http.close()
    return process, database


def close_an_open_matter(
    sandbox: SandboxServer, admin: SandboxAdmin, database: Path, connection_id: str
) -> dict:
    """Close one open matter as a person in the web UI would; the matter as it was read."""
    settings = sandbox_settings(sandbox, f"sqlite:///{database}", connection_id)
    store = open_store(settings.state_url)
    with PracticePantherClient(settings, store) as client:
        matter: dict = next(iter(client.list("matters", filter="status eq 'Open'", limit=1)))
    store.close()
    admin.mutate([{"op": "update", "resource": "matters", "id": matter["id"], "data": {"status": "Closed"}}])
    return matter


def _wait(process: subprocess.Popen[bytes], timeout: float = 20) -> int | None:
    """``process``'s exit code; None when it was still running after ``timeout`` (then killed)."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def _sigterm_with_the_file_locked(
    process: subprocess.Popen[bytes], database: Path, *, unlock_after: float | None
) -> tuple[int | None, float]:
    """SIGTERM ``process`` while another connection holds ``database``'s write lock, given back
    ``unlock_after`` seconds later (None: once the process is gone); its exit code and how long
    it took to stop."""
    other = sqlite3.connect(database, isolation_level=None, timeout=30)  # another process writing
    try:
        other.execute("BEGIN IMMEDIATE")
        time.sleep(1.0)  # the heartbeat and the poll turn now wait in busy_timeout
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        if unlock_after is not None:
            time.sleep(unlock_after)
            other.execute("ROLLBACK")
        code = _wait(process)
        return code, time.monotonic() - started
    finally:
        other.close()
        if process.poll() is None:
            process.kill()


def test_ppw_run_embedded_end_to_end_and_graceful_stop(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> None:
    process, database = start_embedded(sandbox, slack_stub, tmp_path, connection_id)
    admin = SandboxAdmin(sandbox.url)
    try:
        # two polls of matters were seen: the first primed (no firing), so a change now is detected
        matter = close_an_open_matter(sandbox, admin, database, connection_id)
        [message] = slack_stub.wait_for(1, HOOK, timeout=30)
        assert matter["display_name"] in message.json["text"]
    finally:
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = _wait(process)
        output = (tmp_path / "ppw-run.log").read_text()
        admin.http.close()
    assert code == 0, output[-3000:]
    assert time.monotonic() - started < 10
    assert "embedded mode" in output
    assert sandbox.config.client_secret not in output


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


def test_sigterm_while_the_poll_scheduler_waits_on_a_locked_sqlite_file(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> None:
    """The leader heartbeat (every third of a second here) is waiting for SQLite's write lock when
    SIGTERM comes, and gets it while the scheduler stops. APScheduler's ``shutdown(wait=True)``
    waited for that job holding the job-store lock the heartbeat needs next: `ppw run` hung."""
    process, database = start_embedded(sandbox, slack_stub, tmp_path, connection_id)
    # polling is stopping, the heartbeat still waiting; then it gets the lock, renews, syncs its jobs
    code, took = _sigterm_with_the_file_locked(process, database, unlock_after=1.0)
    output = (tmp_path / "ppw-run.log").read_text()
    assert code == 0, output[-3000:]
    assert took < 8, output[-3000:]
    store = open_store(f"sqlite:///{database}")
    try:  # leadership was handed over at once, not left to lapse
        assert store.get(leader_key(connection_id)) is None
    finally:
        store.close()


def test_sigterm_while_another_process_keeps_the_sqlite_file_locked(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> None:
    """A job that cannot get the store before the stop's deadline is abandoned (and said so), not
    waited for: the process exits within the grace plus a few seconds."""
    process, database = start_embedded(sandbox, slack_stub, tmp_path, connection_id)
    code, took = _sigterm_with_the_file_locked(process, database, unlock_after=None)
    output = (tmp_path / "ppw-run.log").read_text()
    assert code == 0, output[-3000:]
    assert took < 8, output[-3000:]  # PPW_SHUTDOWN_GRACE=5: no wait for the 10s busy_timeout
    assert "still waiting on the state store" in output and "abandoned" in output
