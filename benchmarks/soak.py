"""Soak: ``ppw run`` against a sandbox churning at 50 times a busy firm, for half an hour.

A **busy firm** makes about **20 changes a minute** in PracticePanther during its busiest hours
(some 40 fee earners and staff, each logging time, ticking off a task, editing a note or moving
a matter about once every two minutes). The soak churns at **50 times** that, **1,000 changes a
minute** (``ppw sandbox --seed 1 --churn 1000``: the churn thread's mix of one working day, see
:mod:`worker.sandbox.churn`), so 30 minutes are about 25 hours of a busy firm's changes.

What runs, each in its own process, as an operator starts them:

- ``ppw sandbox`` (seeded firm, churn), and the HTTP sink (:mod:`benchmarks.sink`);
- ``ppw run``: embedded by default (in-process broker, SQLite state in a temporary directory), or
  ``--state redis://...`` (Redis state, still the in-process broker). Its rules are the example
  rules of ``rules/`` (Slack webhooks pointing at the sink, PracticePanther writes going to the
  sandbox) plus ``soak-every-change``, which posts every created or updated matter, task, time
  entry and note to the sink with ``http.request``, so most changes make a run that does real
  work. The poll interval is ``--poll-interval`` (10 s; the shipped jitter), the flood limit is
  raised (1,000 changes a minute would otherwise be held for an operator, as they should be).

Every ``--every`` seconds (5) the harness samples the worker process: resident memory
(``VmRSS``), open file descriptors (``/proc/<pid>/fd``), threads (``Threads`` of
``/proc/<pid>/status``), CPU, state bytes (keys, fields and values under the connection's prefix,
the sum :meth:`~worker.state.base.StateStore.size_bytes` makes, broken down by kind of key; on
SQLite also the database file with its ``-wal``) and ``ppw_events_total`` from ``/metrics``.

Detection latency is measured as :mod:`benchmarks.latency` defines it (the record's ``updated_at``,
written by the sandbox, to the event), from outside the process: every ``--probe-every`` seconds
(2) the harness creates a matter through ``/_sandbox/mutate`` (archived, so that neither the churn
nor a rule changes it again before the poll sees it); an event's id is a function of its
record and revision (:func:`worker.events.event_id`), so the harness looks the event up in the
state store every 0.2 s, and latency = the moment it was first seen there minus ``updated_at`` (the
sandbox and the harness share the host's clock). Its p99 is taken per window (60 s, less in a
short run).

After a warm-up (the first 2 minutes, or 20% of a shorter run) each series gets a least-squares
line; its slope is reported per hour, and the series is **flat** when the growth it implies over
the measured span is within noise::

    |slope * span| < max(2 * stdev of the residuals, floor)

with a small absolute floor per series (:data:`FLOORS`: 2 MB of RSS, 2 descriptors, 1 thread,
64 KiB of state, 0.5 s of p99 latency). Descriptors and threads must be flat; so must the latency
p99 per window. State is expected to grow while records are created (every new record gets a
snapshot, every event and run is kept for its retention), which the breakdown by kind shows.

Writes ``benchmarks/results/soak-<timestamp>.json`` (or ``--out``) and a PNG of the series (one
panel each) beside it, and prints a table.

    python -m benchmarks.soak [--minutes 30] [--every 5] [--churn 1000] [--state redis://...]
    make soak MINUTES=3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks import children
from benchmarks.latency import percentile
from benchmarks.report import RESULTS_DIR, machine
from benchmarks.sandbox_tools import Admin, connect
from benchmarks.services import delete_matching, free_port, unique
from benchmarks.worker_process import clean_env, directory_bytes, ppw_command
from worker.events import event_id
from worker.eventstore import EventStore
from worker.polling.snapshots import parse_revision, revision_text
from worker.settings import Settings
from worker.state import StateStore, open_store

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
#: Changes a minute of a busy firm, and the soak's multiple of it.
BUSY_FIRM_PER_MINUTE = 20
MULTIPLE = 50
DEFAULT_CHURN = BUSY_FIRM_PER_MINUTE * MULTIPLE
DEFAULT_MINUTES = 30.0
DEFAULT_EVERY = 5.0
DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_PROBE_EVERY = 2.0
WARMUP_SECONDS = 120.0
WARMUP_FRACTION = 0.2
READY_TIMEOUT = 120.0
PROBE_CHECK_EVERY = 0.2
#: Seconds a probe may go unseen before it counts as missed (a poll, the jitter, and slack).
PROBE_GIVE_UP = 120.0

#: Series sampled, their unit, and the growth below which a series is flat whatever its noise.
SERIES: dict[str, tuple[str, float]] = {
    "rss_mb": ("MB", 2.0),
    "fds": ("descriptors", 2.0),
    "threads": ("threads", 1.0),
    "state_bytes": ("bytes", 65536.0),
    "state_file_bytes": ("bytes", 262144.0),
    "cpu_percent": ("% of a core", 5.0),
}
#: Windowed series (one value per window): detection latency p99 and events per minute.
WINDOWED: dict[str, tuple[str, float]] = {
    "latency_p99_s": ("s", 0.5),
    "events_per_minute": ("events/min", 0.0),  # floor: 10% of the mean, see analyse()
}
FLOORS = {name: floor for name, (_unit, floor) in {**SERIES, **WINDOWED}.items()}
#: Series that must be flat for the soak to pass.
MUST_BE_FLAT = ("rss_mb", "fds", "threads", "latency_p99_s")

SOAK_RULE = """\
- id: soak-every-change
  description: every created or updated record of the busy resources goes to the sink
  trigger:
    resource: {resource}
    on: [created, updated]
  steps:
    - type: http.request
      with:
        method: POST
        url: "{sink}/soak/{resource}"
        json:
          id: "{{{{ record.id }}}}"
          resource: {resource}
          updated_at: "{{{{ record.updated_at }}}}"
"""
SOAK_RESOURCES = ("matters", "tasks", "time_entries", "notes")


# -- the processes ---------------------------------------------------------------------------------
@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    metrics_url: str
    log: Any
    connection: str
    state_url: str
    sqlite_path: Path | None


def _write_rules(directory: Path, sink_url: str) -> Path:
    rules = directory / "rules"
    shutil.copytree(RULES_DIR, rules)
    # One rule per resource (ids are unique across the directory).
    (rules / "soak-every-change.yaml").write_text(
        "".join(
            SOAK_RULE.format(resource=r, sink=sink_url).replace("soak-every-change", f"soak-every-{r}")
            for r in SOAK_RESOURCES
        )
    )
    return rules


@contextmanager
def worker(tmp: Path, sandbox_url: str, sink_url: str, state: str, poll_interval: float) -> Iterator[Worker]:
    connection = unique("soak")
    if state == "sqlite":
        sqlite_path: Path | None = tmp / "state.db"
        state_url = f"sqlite:///{sqlite_path}"
    else:
        sqlite_path, state_url = None, state
    store = open_store(state_url)
    try:
        connect(sandbox_url, store, connection)
    finally:
        store.close()
    rules = _write_rules(tmp, sink_url)
    port = free_port()
    env = clean_env(
        {
            "PPW_PP_BASE_URL": sandbox_url,
            "PPW_PP_CLIENT_ID": "ppw-sandbox-client",
            "PPW_PP_CLIENT_SECRET": "ppw-sandbox-secret",
            "PPW_STATE_URL": state_url,
            "PPW_BROKER_URL": "memory://",
            "PPW_CONNECTION_ID": connection,
            "PPW_RULES_DIR": str(rules),
            "PPW_HTTP_PORT": str(port),
            "PPW_HTTP_HOST": "127.0.0.1",
            "PPW_LOG_LEVEL": "WARNING",
            "PPW_POLL_INTERVAL": str(poll_interval),
            "PPW_FLOOD_LIMIT": str(10**9),
            "PPW_HTTP_ALLOWED_HOSTS": sink_url.split("://", 1)[1],
            "PPW_SLACK_WEBHOOKS__BILLING": f"{sink_url}/hooks/billing",
            "PPW_SLACK_WEBHOOKS__PARTNERS": f"{sink_url}/hooks/partners",
        }
    )
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the process ends
    process = subprocess.Popen(ppw_command("run"), env=env, cwd=tmp, stdout=log, stderr=log)
    running = Worker(process, f"http://127.0.0.1:{port}/metrics", log, connection, state_url, sqlite_path)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", running)
        _wait_primed(running, rules)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.close()
        if sqlite_path is None:
            delete_matching(state_url, f"ppw:{connection}:*")


def log_tail(running: Worker, lines: int = 8) -> list[str]:
    running.log.seek(0)
    return running.log.read().decode(errors="replace").strip().splitlines()[-lines:]


def _wait_ready(url: str, running: Worker) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                break
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    raise RuntimeError(f"ppw run did not become ready: {' | '.join(log_tail(running))}")


def _wait_primed(running: Worker, rules: Path) -> None:
    """Until every watched resource has a cursor: a priming poll makes no events, so a probe
    made before it would never be seen."""
    from worker.polling import cursors
    from worker.rules.engine import rules_by_resource
    from worker.rules.watcher import RuleRegistry

    registry = RuleRegistry(settings=Settings(rules_dir=rules))
    registry.load()
    watched = sorted(rules_by_resource(registry.engine))
    store = open_store(running.state_url)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and running.process.poll() is None:
            if all(cursors.load_cursor(store, running.connection, r) is not None for r in watched):
                return
            time.sleep(0.5)
    finally:
        store.close()
    raise RuntimeError(f"ppw run did not prime {', '.join(watched)}: {' | '.join(log_tail(running))}")


# -- sampling --------------------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS`` (kB) and ``Threads`` of ``/proc/<pid>/status``."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "Threads"):
                found[name] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def state_by_kind(running: Worker) -> dict[str, dict[str, int]]:
    """Keys and bytes under ``ppw:<connection>:``, by kind (``event``, ``snap``, ``run`` ...).

    Bytes are counted as :meth:`~worker.state.base.StateStore.size_bytes` counts them: on SQLite
    the lengths of keys, fields, members and values; on Redis ``MEMORY USAGE`` (pipelined here,
    the store's method makes one round trip per key).
    """
    prefix = f"ppw:{running.connection}:"
    kinds: dict[str, dict[str, int]] = {}

    def add(kind: str, keys: int, size: int) -> None:
        entry = kinds.setdefault(kind or "?", {"keys": 0, "bytes": 0})
        entry["keys"] += keys
        entry["bytes"] += size

    if running.sqlite_path is not None:
        # The same sums as SQLiteStore.size_bytes, grouped by the key's kind, on a read-only connection.
        conn = sqlite3.connect(f"file:{running.sqlite_path}?mode=ro", uri=True, timeout=10)
        try:
            start = len(prefix) + 1
            kind = f"substr(key, {start}, CASE WHEN instr(substr(key, {start}), ':') > 0 "
            kind += f"THEN instr(substr(key, {start}), ':') - 1 ELSE length(key) END)"
            where = "WHERE key >= ? AND key < ?"
            params = (prefix, prefix + "\U0010ffff")
            for sql, counts_keys in (
                (
                    f"SELECT {kind}, COUNT(*), SUM(LENGTH(key) + COALESCE(LENGTH(value), 0)) "
                    f"FROM entries {where} GROUP BY 1",
                    True,
                ),
                (
                    f"SELECT {kind}, 0, SUM(LENGTH(key) + LENGTH(field) + LENGTH(value)) "
                    f"FROM hash_fields {where} GROUP BY 1",
                    False,
                ),
                (
                    f"SELECT {kind}, 0, SUM(LENGTH(key) + LENGTH(member) + 8) "
                    f"FROM zset_members {where} GROUP BY 1",
                    False,
                ),
            ):
                for name, keys, size in conn.execute(sql, params):
                    add(name, keys if counts_keys else 0, int(size or 0))
        finally:
            conn.close()
        return kinds
    import redis

    client = redis.Redis.from_url(running.state_url)
    try:
        batch: list[bytes] = []

        def flush() -> None:
            pipe = client.pipeline(transaction=False)
            for name in batch:
                pipe.memory_usage(name)
            for name, size in zip(batch, pipe.execute(), strict=True):
                add(name.decode()[len(prefix) :].split(":", 1)[0], 1, int(size or 0))
            batch.clear()

        for name in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                flush()
        if batch:
            flush()
    finally:
        client.close()
    return kinds


def events_total(client: httpx.Client, url: str) -> float:
    """Sum of ``ppw_events_total`` over its labels, from ``/metrics``."""
    total = 0.0
    for line in client.get(url, timeout=10).text.splitlines():
        if line.startswith("ppw_events_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- latency probes --------------------------------------------------------------------------------
@dataclass
class Probe:
    made: float  # harness time.time() when the create returned
    changed: float  # the record's updated_at (sandbox clock = host clock)
    keys: tuple[str, ...]  # the event keys it may be stored under (created, or updated)
    seen: float | None = None


@dataclass
class Prober:
    """Creates a matter every ``every`` seconds and times until its event is in the state store."""

    admin: Admin
    store: StateStore
    connection: str
    every: float
    probes: list[Probe] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="soak-prober", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _make(self) -> None:
        # Archived: the churn never touches an archived matter, so the event is at this revision.
        body = {"name": f"Soak probe {len(self.probes)}", "status": "Archived"}
        [record] = self.admin.create("matters", [body])
        changed = parse_revision(record.get("updated_at"))
        if changed is None:
            raise RuntimeError("the sandbox returned a matter without updated_at")
        revision = revision_text(changed)
        keys = tuple(
            EventStore.key(
                self.connection, event_id(self.connection, "matters", record["id"], f"{t}:{revision}")
            )
            for t in ("created", "updated")
        )
        self.probes.append(Probe(time.time(), changed.timestamp(), keys))

    def _check(self) -> None:
        now = time.time()
        waiting = [p for p in self.probes if p.seen is None and now - p.made < PROBE_GIVE_UP]
        if not waiting:
            return
        found = self.store.get_many([k for p in waiting for k in p.keys])
        for index, probe in enumerate(waiting):
            if any(found[index * 2 : index * 2 + 2]):
                probe.seen = now

    def _run(self) -> None:
        next_probe = time.monotonic()
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_probe:
                    next_probe += self.every
                    self._make()
                self._check()
            except Exception:  # a failed probe must not end the soak; it is counted
                self.errors += 1
            self._stop.wait(PROBE_CHECK_EVERY)

    def drain(self, seconds: float) -> None:
        """After the soak: keep checking until the last probes are seen (or ``seconds`` pass)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(p.seen is None for p in self.probes):
            self._check()
            time.sleep(PROBE_CHECK_EVERY)


# -- the run ---------------------------------------------------------------------------------------
def run(
    minutes: float = DEFAULT_MINUTES,
    *,
    every: float = DEFAULT_EVERY,
    churn: float = DEFAULT_CHURN,
    state: str = "sqlite",
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    probe_every: float = DEFAULT_PROBE_EVERY,
    window: float | None = None,
    echo: Any = None,
) -> dict[str, Any]:
    """Run the soak for ``minutes``; the samples, probes, fits and verdicts as a dict."""
    say = echo or (lambda _text: None)
    duration = minutes * 60.0
    samples: list[dict[str, Any]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ppw-soak-")))
        sandbox = stack.enter_context(children.sandbox("--seed", "1", "--churn", f"{churn:g}"))
        sink = stack.enter_context(children.sink())
        say(f"sandbox {sandbox.url} (churn {churn:g}/min), sink {sink.url}; starting ppw run ...")
        running = stack.enter_context(worker(tmp, sandbox.url, sink.url, state, poll_interval))
        pid = running.process.pid
        store = open_store(running.state_url)
        stack.callback(store.close)
        admin = Admin(sandbox.url)
        stack.callback(admin.close)
        http = stack.enter_context(httpx.Client(timeout=10))
        prober = Prober(admin, store, running.connection, probe_every)
        prober.start()
        stack.callback(prober.stop)
        say(f"ppw run (pid {pid}) ready; sampling every {every:g}s for {minutes:g} min")
        started = time.time()
        last_cpu, last_at = cpu_seconds(pid), time.monotonic()
        breakdowns: dict[str, dict[str, dict[str, int]]] = {}
        next_sample = time.monotonic()
        warmup = warmup_seconds(duration)
        while True:
            elapsed = time.time() - started
            if running.process.poll() is not None:
                raise RuntimeError(f"ppw run exited with {running.process.returncode}: {log_tail(running)}")
            status = proc_status(pid)
            cpu, at = cpu_seconds(pid), time.monotonic()
            kinds = state_by_kind(running)
            sample = {
                "t": round(elapsed, 2),
                "rss_mb": round(status.get("VmRSS", 0) / 1024, 2),
                "fds": open_fds(pid),
                "threads": status.get("Threads", 0),
                "cpu_percent": round((cpu - last_cpu) / max(at - last_at, 1e-9) * 100, 1)
                if samples
                else None,
                "state_bytes": sum(k["bytes"] for k in kinds.values()),
                "state_keys": sum(k["keys"] for k in kinds.values()),
                "state_file_bytes": directory_bytes(running.sqlite_path) if running.sqlite_path else None,
                "events_total": events_total(http, running.metrics_url),
                "sink_received": children.sink_count(sink.url, http)["received"],
            }
            last_cpu, last_at = cpu, at
            samples.append(sample)
            if "start" not in breakdowns:
                breakdowns["start"] = kinds
            if elapsed >= warmup and "after_warmup" not in breakdowns:
                breakdowns["after_warmup"] = kinds
            if len(samples) % max(1, round(60 / every)) == 0:
                say(
                    f"  {elapsed / 60:5.1f} min  rss {sample['rss_mb']:.1f} MB  fds {sample['fds']}  "
                    f"threads {sample['threads']}  state {sample['state_bytes'] / 2**20:.2f} MB  "
                    f"events {sample['events_total']:.0f}  probes {len(prober.probes)}"
                )
            if elapsed >= duration:
                breakdowns["end"] = kinds
                break
            next_sample += every
            time.sleep(max(0.0, next_sample - time.monotonic()))
        prober.stop()
        prober.drain(poll_interval + Settings.model_fields["poll_jitter"].default + 30)
        info = admin.http.get("/_sandbox/info").json()
        tail = log_tail(running, 20)
        running.log.seek(0)
        log_lines = running.log.read().decode(errors="replace").splitlines()
    probes = [
        {"made": round(p.made - started, 2), "latency_s": round(p.seen - p.changed, 3) if p.seen else None}
        for p in prober.probes
    ]
    result = {
        "benchmark": "soak",
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "config": {
            "minutes": minutes,
            "every_seconds": every,
            "churn_per_minute": churn,
            "busy_firm_per_minute": BUSY_FIRM_PER_MINUTE,
            "multiple_of_busy_firm": churn / BUSY_FIRM_PER_MINUTE,
            "state": "sqlite" if state == "sqlite" else "redis",
            "broker": "memory",
            "poll_interval": poll_interval,
            "poll_jitter": Settings.model_fields["poll_jitter"].default,
            "probe_every_seconds": probe_every,
            "rules": [p.name for p in sorted(RULES_DIR.rglob("*.yaml"))] + ["soak-every-change.yaml"],
        },
        "machine": machine(),
        "samples": samples,
        "probes": probes,
        "probe_errors": prober.errors,
        "state_by_kind": breakdowns,
        "sandbox_counts": info.get("counts", {}),
        "worker_log": {
            "lines": len(log_lines),
            "errors": sum(1 for line in log_lines if "ERROR" in line or "Traceback" in line),
            "warnings": sum(1 for line in log_lines if "WARNING" in line),
            "tail": tail,
        },
    }
    result.update(analyse(samples, probes, duration, window))
    return result


def warmup_seconds(duration: float) -> float:
    """The first 2 minutes, or 20% of a run shorter than 10 minutes."""
    return min(WARMUP_SECONDS, WARMUP_FRACTION * duration)


def default_window(duration: float) -> float:
    """60 s windows, shorter in a short run so there are at least about six after the warm-up."""
    return max(10.0, min(60.0, (duration - warmup_seconds(duration)) / 6))


# -- analysis --------------------------------------------------------------------------------------
def fit(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Least squares ``y = a + b·t``: ``(a, b per second, stdev of the residuals)``."""
    n = len(points)
    if n < 2:
        return (points[0][1] if points else 0.0), 0.0, 0.0
    mt = statistics.fmean(t for t, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((t - mt) ** 2 for t, _ in points)
    slope = sum((t - mt) * (y - my) for t, y in points) / sxx if sxx else 0.0
    intercept = my - slope * mt
    residuals = [y - (intercept + slope * t) for t, y in points]
    spread = statistics.stdev(residuals) if n > 2 else 0.0
    return intercept, slope, spread


def verdict(name: str, points: list[tuple[float, float]], floor: float) -> dict[str, Any]:
    """Slope per hour and whether the growth over the span is within noise (see the module doc)."""
    intercept, slope, spread = fit(points)
    span = points[-1][0] - points[0][0] if len(points) > 1 else 0.0
    growth = slope * span
    allowed = max(2 * spread, floor)
    values = [y for _, y in points]
    return {
        "points": len(points),
        "t0": points[0][0] if points else 0.0,
        "first": values[0] if values else None,
        "last": values[-1] if values else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "mean": round(statistics.fmean(values), 3) if values else None,
        "intercept": round(intercept, 3),
        "slope_per_hour": round(slope * 3600, 3),
        "span_seconds": round(span, 1),
        "growth_over_span": round(growth, 3),
        "residual_stdev": round(spread, 3),
        "allowed": round(allowed, 3),
        "flat": abs(growth) < allowed if len(points) > 2 else None,
    }


def windows(
    probes: list[dict[str, Any]], samples: list[dict[str, Any]], start: float, end: float, size: float
) -> list[dict[str, Any]]:
    """Per window after the warm-up: probes, misses, latency percentiles, events a minute."""
    found: list[dict[str, Any]] = []
    count = max(1, math.floor((end - start) / size + 1e-9))
    for index in range(count):
        lo, hi = start + index * size, start + (index + 1) * size
        inside = [p for p in probes if lo <= p["made"] < hi]
        latencies = [p["latency_s"] for p in inside if p["latency_s"] is not None]
        edge = [s for s in samples if lo <= s["t"] <= hi]
        rate = None
        if len(edge) >= 2 and edge[-1]["t"] > edge[0]["t"]:
            rate = (edge[-1]["events_total"] - edge[0]["events_total"]) / (edge[-1]["t"] - edge[0]["t"]) * 60
        found.append(
            {
                "start": round(lo, 1),
                "end": round(hi, 1),
                "probes": len(inside),
                "missed": len(inside) - len(latencies),
                "latency_p50_s": round(percentile(latencies, 0.5), 3) if latencies else None,
                "latency_p99_s": round(percentile(latencies, 0.99), 3) if latencies else None,
                "events_per_minute": round(rate, 1) if rate is not None else None,
            }
        )
    return found


def analyse(
    samples: list[dict[str, Any]], probes: list[dict[str, Any]], duration: float, window: float | None = None
) -> dict[str, Any]:
    warmup = warmup_seconds(duration)
    size = window or default_window(duration)
    after = [s for s in samples if s["t"] >= warmup]
    series: dict[str, Any] = {}
    for name, (unit, floor) in SERIES.items():
        points = [(s["t"], float(s[name])) for s in after if s.get(name) is not None]
        if points:
            series[name] = {"unit": unit, **verdict(name, points, floor)}
    by_window = windows(probes, samples, warmup, duration, size)
    for name, (unit, floor) in WINDOWED.items():
        points = [((w["start"] + w["end"]) / 2, float(w[name])) for w in by_window if w[name] is not None]
        if not points:
            continue
        if name == "events_per_minute":
            floor = 0.1 * statistics.fmean(y for _, y in points)
        series[name] = {"unit": unit, **verdict(name, points, floor)}
    latencies = [p["latency_s"] for p in probes if p["latency_s"] is not None and p["made"] >= warmup]
    failing = [name for name in MUST_BE_FLAT if name in series and series[name]["flat"] is False]
    missed = sum(1 for p in probes if p["latency_s"] is None)
    return {
        "warmup_seconds": warmup,
        "window_seconds": size,
        "series": series,
        "windows": by_window,
        "latency": {
            "probes": len(probes),
            "missed": missed,
            "p50_s": round(percentile(latencies, 0.5), 3) if latencies else None,
            "p99_s": round(percentile(latencies, 0.99), 3) if latencies else None,
            "max_s": round(max(latencies), 3) if latencies else None,
        },
        "not_flat": [name for name, found in series.items() if found["flat"] is False],
        "passed": not failing and missed == 0 and all(name in series for name in MUST_BE_FLAT),
    }


# -- output ----------------------------------------------------------------------------------------
def table(result: dict[str, Any]) -> str:
    rows = [("series", "unit", "first", "last", "slope/hour", "growth", "allowed", "flat")]
    for name, found in result["series"].items():
        rows.append(
            (
                name,
                found["unit"],
                _short(found["first"]),
                _short(found["last"]),
                _short(found["slope_per_hour"]),
                _short(found["growth_over_span"]),
                _short(found["allowed"]),
                {True: "yes", False: "NO", None: "-"}[found["flat"]],
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    ]
    latency = result["latency"]
    lines.append("")
    lines.append(
        f"latency (after warm-up): p50 {latency['p50_s']} s, p99 {latency['p99_s']} s, "
        f"max {latency['max_s']} s; "
        f"{latency['probes']} probes, {latency['missed']} missed"
    )
    lines.append(
        f"warm-up {result['warmup_seconds']:g} s, windows of {result['window_seconds']:g} s; "
        f"{'PASSED' if result['passed'] else 'FAILED'} (must be flat: {', '.join(MUST_BE_FLAT)}; "
        f"not flat: {', '.join(result['not_flat']) or 'none'})"
    )
    return "\n".join(lines)


def _short(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,.0f}" if isinstance(value, int | float) else str(value)


def plot(result: dict[str, Any], path: Path) -> None:
    """One panel per series: the samples, the warm-up shaded, the fitted line after it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    warmup = result["warmup_seconds"]
    names = [n for n in SERIES if any(s.get(n) is not None for s in samples)]
    panels = len(names) + 2
    figure, axes = plt.subplots(panels, 1, figsize=(9, 2.2 * panels), sharex=True)
    for axis, name in zip(axes, names, strict=False):
        points = [(s["t"] / 60, s[name]) for s in samples if s.get(name) is not None]
        scale, unit = (2**20, "MiB") if name.endswith("bytes") else (1, SERIES[name][0])
        axis.plot([t for t, _ in points], [y / scale for _, y in points], ".-", ms=3, lw=0.8)
        _fit_line(axis, result["series"].get(name), scale)
        axis.set_ylabel(f"{name}\n({unit})", fontsize=8)
    latency_axis, events_axis = axes[-2], axes[-1]
    made = [(p["made"] / 60, p["latency_s"]) for p in result["probes"] if p["latency_s"] is not None]
    latency_axis.plot([t for t, _ in made], [y for _, y in made], ".", ms=2, alpha=0.4, label="probe")
    centre = [((w["start"] + w["end"]) / 120, w) for w in result["windows"]]
    latency_axis.plot(
        [t for t, w in centre if w["latency_p99_s"] is not None],
        [w["latency_p99_s"] for _, w in centre if w["latency_p99_s"] is not None],
        "o-",
        ms=4,
        label="p99 per window",
    )
    _fit_line(latency_axis, result["series"].get("latency_p99_s"), 1)
    latency_axis.set_ylabel("detection\nlatency (s)", fontsize=8)
    latency_axis.legend(fontsize=7, loc="upper left")
    events_axis.plot(
        [t for t, w in centre if w["events_per_minute"] is not None],
        [w["events_per_minute"] for _, w in centre if w["events_per_minute"] is not None],
        "o-",
        ms=4,
    )
    events_axis.set_ylabel("events/min\nper window", fontsize=8)
    events_axis.set_xlabel("minutes")
    for axis in axes:
        axis.axvspan(0, warmup / 60, color="0.9")
        axis.grid(True, lw=0.3)
        axis.tick_params(labelsize=7)
    config = result["config"]
    figure.suptitle(
        f"ppw soak: {config['churn_per_minute']:g} changes/min "
        f"({config['multiple_of_busy_firm']:g}x a busy firm), "
        f"{config['state']} state, {config['minutes']:g} min (warm-up shaded)",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _fit_line(axis: Any, found: dict[str, Any] | None, scale: float) -> None:
    if not found or found["points"] < 2:
        return
    # The fit is over seconds since the start; draw it over the points it covered.
    slope = found["slope_per_hour"] / 3600
    xs = [found["t0"], found["t0"] + found["span_seconds"]]
    axis.plot(
        [x / 60 for x in xs],
        [(found["intercept"] + slope * x) / scale for x in xs],
        "--",
        lw=1,
        color="tab:red",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES)
    parser.add_argument("--every", type=float, default=DEFAULT_EVERY, help="seconds between samples")
    parser.add_argument("--churn", type=float, default=DEFAULT_CHURN, help="sandbox changes a minute")
    parser.add_argument("--state", default="sqlite", help="sqlite (default) or a redis:// URL")
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL)
    parser.add_argument("--probe-every", type=float, default=DEFAULT_PROBE_EVERY)
    parser.add_argument("--window", type=float, default=None, help="seconds per latency window")
    parser.add_argument("--out", type=Path, default=None, help="the JSON file (the PNG goes beside it)")
    args = parser.parse_args(argv)
    if args.state != "sqlite" and not args.state.startswith(("redis://", "rediss://")):
        parser.error("--state is sqlite or a redis:// URL")
    result = run(
        args.minutes,
        every=args.every,
        churn=args.churn,
        state=args.state,
        poll_interval=args.poll_interval,
        probe_every=args.probe_every,
        window=args.window,
        echo=lambda text: print(text, flush=True),
    )
    out = args.out or RESULTS_DIR / f"soak-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    result["plot"] = str(png)
    out.write_text(json.dumps(result, indent=2))
    plot(result, png)
    print(table(result))
    print(f"\n{out}\n{png}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
