"""`make demo` starts from nothing, shows detected changes and fired rules, and stops on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.conftest import eventually

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.demo",
                "--churn",
                "120",
                "--interval",
                "1",
                "--rules",
                str(REPO / "rules"),
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            eventually(
                lambda: "rule " in log.read_text() and "\U0001f50e" in log.read_text(),
                timeout=60,
                message="the demo to show a detected change and a fired rule",
            )
        finally:
            process.send_signal(signal.SIGINT)
            started = time.monotonic()
            code = process.wait(30)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert time.monotonic() - started < 20
    assert "connected to the sandbox with OAuth" in text and "demo stopped" in text
    assert "web console at http://127.0.0.1:" in text and "log in as demo / " in text
    assert (tmp_path / ".ppw" / "demo" / "state.db").exists()
