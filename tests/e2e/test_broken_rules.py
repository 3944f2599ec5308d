"""A worker with broken or missing rules says so loudly, as a user runs it: `ppw run` (embedded
defaults, against the sandbox) with a rule file holding one broken and one good rule logs the error
with file:line:column at ERROR, names it in /readyz and `ppw_rule_errors`, and still fires the good
rule; with PPW_STRICT_RULES it refuses to start; with no rule loaded at all it says which files failed.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import CLOSED_MATTER_RULE, eventually
from tests.e2e.test_ppw_run import HOOK, PPW, close_an_open_matter, embedded_env, start_embedded
from tests.fixtures.client import SandboxAdmin
from tests.fixtures.stubs import StubServer
from worker.sandbox import SandboxServer

#: A rule with a typo in a field name: closing.yaml:5:34, the 's' of 'stauts'.
BROKEN_RULE = """\
- id: broken-intake
  trigger: {resource: matters, on: updated}
  steps:
    - type: log
      with: {message: "{{ record.stauts }}"}
"""
BROKEN_AT = "closing.yaml:5:34"


def _health_url(log: Path) -> str | None:
    found = re.search(r"health and metrics on (http://\S+)", log.read_text(errors="replace"))
    return found.group(1) if found else None


def _stop(process: subprocess.Popen[bytes]) -> int | None:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def test_one_broken_rule_is_reported_and_the_good_one_still_fires(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> None:
    process, database = start_embedded(
        sandbox, slack_stub, tmp_path, connection_id, BROKEN_RULE + CLOSED_MATTER_RULE
    )
    log = tmp_path / "ppw-run.log"
    admin = SandboxAdmin(sandbox.url)
    try:
        url = eventually(lambda: _health_url(log), timeout=30, message="the health server to start")
        output = log.read_text(errors="replace")
        assert re.search(
            rf"ERROR .*rule error: \S*{re.escape(BROKEN_AT)}: error: unknown field 'stauts' on matters"
            r".*\[rule broken-intake\]",
            output,
        ), output[-3000:]
        assert "ppw run: 1 rule(s) (1 broken: see the errors above)" in output

        rules = httpx.get(f"{url}/readyz").json()["checks"]["rules"]
        assert rules["ok"] is True, "a broken rule does not take the worker out of service"
        assert rules["detail"].startswith("1 rule loaded, 1 broken: ")
        assert f"{BROKEN_AT} (broken-intake): unknown field 'stauts' on matters" in rules["detail"]
        metrics = httpx.get(f"{url}/metrics").text
        assert re.search(r"^ppw_rule_errors 1(\.0)?$", metrics, re.M), metrics
        assert re.search(r"^ppw_rules_loaded 1(\.0)?$", metrics, re.M)

        matter = close_an_open_matter(sandbox, admin, database, connection_id)
        [message] = slack_stub.wait_for(1, HOOK, timeout=30)
        assert matter["display_name"] in message.json["text"], "the good rule beside it fired"
    finally:
        code = _stop(process)
        admin.http.close()
    assert code == 0, log.read_text(errors="replace")[-3000:]


def test_strict_rules_refuses_to_start_ppw_run(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> None:
    env, _ = embedded_env(sandbox, slack_stub, tmp_path, connection_id, BROKEN_RULE + CLOSED_MATTER_RULE)
    started = time.monotonic()
    done = subprocess.run(
        [PPW, "run", "--http-port", "0"],
        cwd=tmp_path,
        env=env | {"PPW_STRICT_RULES": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-3000:]
    assert took < 20, f"took {took:.1f}s to refuse"
    assert re.search(
        rf"error: PPW_STRICT_RULES is set and 1 rule\(s\) in \S+ did not load: "
        rf"\S*{re.escape(BROKEN_AT)} \(broken-intake\): unknown field 'stauts' on matters",
        done.stderr,
    ), done.stderr[-3000:]
    assert "polling every" not in done.stderr, "nothing started"
    assert "Traceback" not in done.stderr


def test_strict_rules_refuses_to_start_ppw_worker(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str, redis_url: str
) -> None:
    env, _ = embedded_env(sandbox, slack_stub, tmp_path, connection_id, BROKEN_RULE + CLOSED_MATTER_RULE)
    done = subprocess.run(
        [PPW, "worker", "--http-port", "0"],
        cwd=tmp_path,
        env=env
        | {"PPW_STRICT_RULES": "true", "PPW_BROKER_URL": redis_url, "PPW_QUEUE_PREFIX": connection_id},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "error: PPW_STRICT_RULES is set and 1 rule(s)" in done.stderr, done.stderr[-3000:]
    assert f"{BROKEN_AT} (broken-intake)" in done.stderr


def test_rule_files_present_but_no_rule_loaded_is_an_error_naming_the_files(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> None:
    env, _ = embedded_env(sandbox, slack_stub, tmp_path, connection_id, BROKEN_RULE)
    (tmp_path / "rules" / "other.yaml").write_text("- id: other\n  trigger: {resource: matters\n")
    log = tmp_path / "ppw-run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PPW, "run", "--http-port", "0"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = eventually(lambda: _health_url(log), timeout=30, message="the health server to start")
        line = re.search(r"^.*no rule loaded from .*$", log.read_text(errors="replace"), re.M)
        assert line is not None, log.read_text(errors="replace")[-3000:]
        assert " ERROR " in line.group(0)
        assert re.search(r"2 broken rule\(s\) in \S*closing\.yaml, \S*other\.yaml;", line.group(0))
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503, "rule files there, not one rule loaded: not ready"
        rules = ready.json()["checks"]["rules"]
        assert rules["ok"] is False and rules["detail"].startswith("no rule loaded from 2 rule file(s)")
    finally:
        code = _stop(process)
    assert code == 0, log.read_text(errors="replace")[-3000:]
