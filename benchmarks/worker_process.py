"""Running ``ppw`` as a child process the way an operator does, and measuring what it cost.

The figures that matter for a deployment (peak memory, CPU time) belong to the worker process
alone, not to the harness that also hosts the simulator, so commands run in a fresh interpreter
with a clean environment (only the ``PPW_*`` values given, run from an empty directory so no
``.env`` is read). CPU time comes from ``wait4``. Peak memory comes from ``VmHWM`` in
``/proc/<pid>/status``, read while the child runs: ``wait4``'s ``ru_maxrss`` survives ``exec`` on
Linux, so it would report the *harness's* size at the moment it forked the child (hundreds of MB
when the harness holds 100,000 records), not the worker's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from worker.practicepanther.tokens import TokenSet, TokenStore
from worker.state import open_store


@dataclass(frozen=True)
class Finished:
    """A child process that ran to completion."""

    returncode: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    stdout: str
    stderr: str


def clean_env(values: dict[str, str]) -> dict[str, str]:
    """The parent's environment without any ``PPW_*`` (or Sentry) setting, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PPW_", "SENTRY_"))}
    env.update(values)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def ppw_command(*args: str) -> list[str]:
    """``python -m worker <args>``: the ``ppw`` entry point of this interpreter's environment."""
    return [sys.executable, "-m", "worker", *args]


def run(command: list[str], env: dict[str, str], *, timeout: float = 900.0) -> Finished:
    """Run ``command`` to completion; wall time, peak RSS and CPU time come from the kernel."""
    with (
        tempfile.TemporaryDirectory(prefix="ppw-bench-cwd-") as cwd,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)
        deadline = started + timeout
        peak_kb = 0
        while True:
            peak_kb = max(peak_kb, high_water_kb(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Finished(
            returncode=process.returncode,
            seconds=seconds,
            peak_rss_mb=(peak_kb or usage.ru_maxrss) / 1024,  # kilobytes
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            stdout=out.read(),
            stderr=err.read(),
        )


def high_water_kb(pid: int) -> int:
    """The process's peak resident set size so far (``VmHWM``, kB); 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def store_tokens(state_url: str, connection: str, *, lifetime: float = 86_400.0) -> None:
    """A live token set in the state store, so a worker can call the API without logging in.

    For benchmarks against servers that accept any bearer token (the bulk listing server); against
    the sandbox the real OAuth flow is used instead.
    """
    from datetime import UTC, datetime, timedelta

    store = open_store(state_url)
    try:
        TokenStore(store, connection, None).save(
            TokenSet(
                access_token=SecretStr("bench-access-token"),
                refresh_token=SecretStr("bench-refresh-token"),
                expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
            )
        )
    finally:
        store.close()


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def describe_failure(finished: Finished) -> str:
    tail = (finished.stderr or finished.stdout).strip().splitlines()[-5:]
    return f"exit {finished.returncode}: " + " | ".join(tail)


def json_output(finished: Finished) -> Any:
    import json

    return json.loads(finished.stdout)
