"""Where the end-to-end time goes: the throughput benchmark under py-spy, summarised by function.

``py-spy record --gil`` samples only the thread holding the GIL, so the profile is the CPU the
Python process spends (a worker thread waiting on Redis or HTTP is not counted), across every
thread: the poll, dispatch and run actors, the scheduler, Dramatiq's consumers. The summary gives
each stage's share (the actor functions in ``worker/process/actors.py``), the ``worker/`` functions with
the largest inclusive share, and the frames with the largest own (self) share.

    python -m benchmarks.profiling [changes] [memory|redis]
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.worker_process import clean_env, describe_failure, run

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+):(?P<line>\d+)\)$")
STAGES = {"poll": "declare_actors.<locals>.poll", "dispatch": "declare_actors.<locals>.dispatch",
          "run": "declare_actors.<locals>.run"}  # fmt: skip


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else None


def _function(frame: str) -> str:
    """``Runner.run (worker/delivery/runner.py:98)`` → ``worker/delivery/runner.py:Runner.run``."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip() or "<unknown>"
    return f"{match['file']}:{match['function']}"


def summarise(raw: str, *, top: int = 15) -> dict[str, Any]:
    """Stage shares, top ``worker/`` functions (inclusive) and top frames (self) of a raw profile."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        functions = [_function(f) for f in stack.split(";")]
        for name in set(functions):
            inclusive[name] += samples
        own[functions[-1]] += samples
    if not total:
        return {"samples": 0}

    def share(n: int) -> float:
        return round(n / total * 100, 1)

    stages = {
        stage: share(sum(n for name, n in inclusive.items() if name.endswith(":" + function)))
        for stage, function in STAGES.items()
    }
    ours = [(n, name) for name, n in inclusive.items() if name.startswith("worker/")]
    return {
        "samples": total,
        "stage_cpu_percent": stages,
        "top_inclusive_worker_functions": [
            {"function": name, "percent": share(n)}
            for n, name in sorted(ours, reverse=True)
            if not name.endswith(tuple(STAGES.values()))
        ][:top],
        "top_self": [{"function": name, "percent": share(n)} for name, n in own.most_common(top)],
    }


def profile_throughput(changes: int = 2_000, kind: str = "redis", rate: int = 200) -> dict[str, Any]:
    """Run ``python -m benchmarks.throughput`` under py-spy and summarise the profile."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory(prefix="ppw-bench-prof-") as tmp:
        out = Path(tmp) / "profile.txt"
        command = [spy, "record", "--gil", "-f", "raw", "-r", str(rate), "-o", str(out), "--",
                   sys.executable, "-m", "benchmarks.throughput", str(changes), kind]  # fmt: skip
        finished = run(command, clean_env({}), timeout=900)
        if finished.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed: {describe_failure(finished)}")
        summary = summarise(out.read_text())
        start = finished.stdout.find("{")
        # py-spy prints its own lines after the benchmark's JSON
        result = json.JSONDecoder().raw_decode(finished.stdout[start:])[0] if start >= 0 else {}
    summary["throughput_under_profiler"] = {
        k: result.get(k)
        for k in ("broker", "changes", "events_per_second", "stages", "state_calls_per_event")
    }
    return summary


def main(argv: list[str]) -> int:
    changes = int(argv[0]) if argv else 2_000
    kind = argv[1] if len(argv) > 1 else "redis"
    print(json.dumps(profile_throughput(changes, kind), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
