"""Metrics merged across processes through PROMETHEUS_MULTIPROC_DIR, as forked workers use them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from worker.observability.exposition import mark_process_dead, prepare_multiprocess_dir, render
from worker.process.health import HealthServer

from .conftest import make_settings

CHILD = """
import os, sys
from worker.observability import metrics
metrics.POLLS.labels("matters", "ok").inc(2)
metrics.API_LATENCY.labels("GET").observe(0.3)
metrics.CURSOR_LAG.labels("matters").set(float(sys.argv[1]))
metrics.RULES_LOADED.set(4)
print(os.getpid())
"""


def run_child(directory: Path, lag: str) -> int:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, lag], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return int(done.stdout.strip())


def test_counters_add_up_and_gauges_show_the_latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "prom"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    (directory / "stale").mkdir(parents=True)
    (directory / "counter_999.db").write_bytes(b"left by the last run")

    assert prepare_multiprocess_dir() == directory
    assert not list(directory.glob("*.db")), "files of the previous run are gone"

    first = run_child(directory, "30")
    second = run_child(directory, "12")
    mark_process_dead(first)

    with HealthServer(make_settings(), host="127.0.0.1", port=0) as server:
        text = httpx.get(f"{server.url}/metrics").text

    assert 'ppw_polls_total{resource="matters",result="ok"} 4.0' in text
    assert 'ppw_api_latency_seconds_count{method="GET"} 2.0' in text
    assert 'ppw_cursor_lag_seconds{resource="matters"} 12.0' in text, "the most recent write wins"
    assert "ppw_rules_loaded 4.0" in text
    assert second != first


def test_single_process_mode_uses_the_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert prepare_multiprocess_dir() is None
    from worker.observability import metrics

    metrics.RULES_LOADED.set(2)
    body, content_type = render()
    assert content_type.startswith("text/plain")
    assert b"# HELP ppw_polls_total" in body
    assert b"ppw_rules_loaded 2.0" in body
