"""``ppw sandbox`` as typed: it starts, announces its client, answers, and rejects bad faults."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from worker.cli import app
from worker.sandbox import obtain_tokens


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def running_cli() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    command = [
        sys.executable, "-m", "worker", "sandbox", "--port", str(port), "--seed", "2",
        "--client-secret", "cli-secret", "--fault", "latency=0", "--fault", "retry_after=2",
        "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "ppw sandbox did not start"
            try:
                if httpx.get(f"{url}/_sandbox/info", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_ppw_sandbox_starts_and_answers(running_cli: tuple[str, subprocess.Popen[str]]) -> None:
    url, process = running_cli
    info = httpx.get(f"{url}/_sandbox/info").json()
    assert info["seed"] == 2 and info["counts"]["matters"] > 0
    assert httpx.get(f"{url}/_sandbox/faults").json()["retry_after"] == 2.0
    tokens = obtain_tokens(url, "ppw-sandbox-client", "cli-secret", "http://127.0.0.1:8765/callback")
    me = httpx.get(f"{url}/api/v2/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200 and me.json()["display_name"] == "Alex Morgan"
    process.terminate()
    output, _ = process.communicate(timeout=15)
    assert f"PPW_PP_BASE_URL={url}" in output
    assert "PPW_PP_CLIENT_ID=ppw-sandbox-client" in output
    assert "PPW_PP_CLIENT_SECRET=cli-secret" in output
    assert "PPW_PP_REDIRECT_URI=http://127.0.0.1:8765/callback" in output


def test_unknown_fault_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["sandbox", "--port", "0", "--fault", "rate_teapot=1"])
    assert result.exit_code == 2
    assert "rate_teapot" in result.output


def test_malformed_fault_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["sandbox", "--port", "0", "--fault", "latency"])
    assert result.exit_code == 2
    assert "name=value" in result.output
