"""`ppw run` serves the console when PPW_CONSOLE_ENABLED=true, and refuses (exit 2) a console that
could not be safe; a real process, embedded defaults, no PracticePanther needed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .conftest import _HASH, CONSOLE_SECRET

PPW = str(Path(sys.executable).with_name("ppw"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    base = {
        n: v for n, v in os.environ.items() if not n.startswith("PPW_") and n != "PROMETHEUS_MULTIPROC_DIR"
    }
    return base | {
        "PPW_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "PPW_RULES_DIR": str(rules),
        "PPW_HTTP_PORT": str(_free_port()),
        "PPW_SHUTDOWN_GRACE": "2",
        "PPW_CONSOLE_ENABLED": "true",
        **extra,
    }


def test_ppw_run_serves_the_console_and_stops_with_it(tmp_path: Path) -> None:
    port = _free_port()
    env = _env(
        tmp_path,
        PPW_CONSOLE_PORT=str(port),
        PPW_CONSOLE_SECRET=CONSOLE_SECRET,
        PPW_CONSOLE_USERS__OLGA=f"operator:{_HASH}",
    )
    process = subprocess.Popen([PPW, "run"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        deadline, answer = time.monotonic() + 30, None
        while time.monotonic() < deadline and answer is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as response:
                    answer = response.read().decode()
                    headers = response.headers
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                time.sleep(0.2)
        assert answer is not None and "Sign in" in answer
        assert "script-src 'self'" in headers["content-security-policy"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()
    assert f"console on http://127.0.0.1:{port}" in err.decode()


def test_ppw_run_refuses_an_enabled_console_without_a_secret(tmp_path: Path) -> None:
    done = subprocess.run(
        [PPW, "run"],
        env=_env(tmp_path, PPW_CONSOLE_PORT=str(_free_port())),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr.decode()
    assert "PPW_CONSOLE_SECRET" in done.stderr.decode()
