"""A week of the demo firm's churn on a simulated clock: does the state store stop growing?

``ppw run``'s pieces run in this process as ``ppw run`` assembles them (:class:`Runtime`: SQLite
state, the rules of ``rules/`` plus one that posts every change to an HTTP sink, the memory
broker and its worker threads) against the sandbox, also in this process, while time-machine
moves the clock. Every simulated :data:`TICK` the harness does what the scheduler's leader does
in that time (poll each watched resource, wake due timers, ring due alarms, re-sync them, prune
the indexes; a reconcile of each resource once a simulated day) after the sandbox's churn made
its changes (:class:`worker.sandbox.churn.Churn`, the mix of ``make demo``), then waits until the
queues are empty. So runs, waits of days, date triggers and every retention rule see the days
pass; nothing sleeps.

At the end of each simulated day it records the state store's bytes by kind
(:func:`worker.state.usage.usage_by_kind`) and the waiting runs with what they hold (their run
records, events and ledger entries). The retention is one day (``PPW_RUN_RETENTION_DAYS=1``, the
shortest setting, so a week holds several retention periods). After the first
:data:`WARMUP_DAYS` days, three series must be flat (the least-squares growth each implies over
the rest of the week within ``max(2 * stdev of the residuals, floor)``):

- what the retention bounds: every kind, less the snapshots and the waiting runs;
- snapshot bytes per live record: the snapshots mirror the firm's records, one per record, and the
  churn keeps adding clients, matters, tasks and time entries;
- bytes per waiting run: a waiting run lives until its wake (the examples wait 7 and 14 days, or
  until 3 business days before a task's due date), not the retention, so their number follows the
  firm's open work and the longest wait.

The churn rate defaults to 1 change a minute, a twentieth of ``make demo``'s 20: a week at 20 a
minute is 200,000 changes, which would take this harness hours. What bounds
each kind is the retention, not the rate (a kind holds about ``rate * retention`` entries), so
the verdict is the same at a twentieth of the load.

    python -m benchmarks.state_week [--days 7] [--churn 1]
    python -m benchmarks --only state_week
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine

from benchmarks import children
from benchmarks.sandbox_tools import connect, settings_for
from benchmarks.services import unique
from benchmarks.soak import _write_rules
from worker.delivery import retention
from worker.delivery.alarms import AlarmPump
from worker.delivery.app import DeliveryApp
from worker.delivery.timers import TimerPump, Timers
from worker.process.runtime import Runtime
from worker.rules.engine import rules_by_resource
from worker.sandbox import SandboxConfig, SandboxServer
from worker.sandbox.churn import Churn
from worker.state import open_store
from worker.state.base import key
from worker.state.usage import usage_by_kind

#: A Monday, 08:00 in New York: the week starts with a working day.
START = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
#: Simulated time between two leader turns (polls, pumps, pruning).
TICK = timedelta(minutes=15)
DEFAULT_DAYS = 7
DEFAULT_CHURN = 1.0
WARMUP_DAYS = 2
#: Growth over the measured days below which a kind is flat whatever its noise (bytes).
FLOOR = 65536
#: The most a flat series may grow a day, as a share of its size (``make bench``'s target).
TARGET_GROWTH_A_DAY = 0.02
#: Seconds to wait for the queues to empty after a turn.
DRAIN_TIMEOUT = 120.0


@dataclass
class Day:
    """The state at the end of one simulated day."""

    day: int
    changes: int
    live_records: int
    waiting_runs: int = 0
    #: bytes of the waiting runs' records, their events and their ledger entries
    waiting_bytes: int = 0
    bytes_by_kind: dict[str, int] = field(default_factory=dict)
    keys_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.bytes_by_kind.values())

    @property
    def kept(self) -> int:
        """Bytes of everything but the snapshots and the waiting runs: what the retention bounds."""
        return self.total - self.bytes_by_kind.get("snap", 0) - self.waiting_bytes


def _live_records(server: SandboxServer, resources: list[str]) -> int:
    """Records of the watched resources in the sandbox: what the snapshots mirror."""
    db = server.state.db
    with db.lock:
        return sum(len(db.tables.get(resource, {})) for resource in resources)


def _waiting(app: DeliveryApp, connection: str) -> tuple[int, int]:
    """The waiting runs and the bytes they hold: each run's record, its event (kept until the wake
    and the retention after it) and its ledger entries. They are bounded by the longest wait, not
    by the retention, and the firm's growing list of tasks with due dates keeps adding to them."""
    store = app.store
    run_ids = [run_id for run_id, _due in Timers(store).upcoming(connection, limit=10**7)]
    seen: set[str] = set()
    size = 0
    for run_id in run_ids:
        run = app.history.find(connection, run_id)
        if run is None:
            continue
        for prefix in (
            key(connection, "run", run_id),
            key(connection, "event", run.event_id),
            key(connection, "ledger", run.event_id, run.rule_id),
        ):
            if prefix not in seen:
                seen.add(prefix)
                size += store.size_bytes(prefix)
    return len(run_ids), size


def _drain(runtime: Runtime) -> None:
    """Until every queue is empty and no message is in a worker's hands (twice in a row: a run
    message can make a dispatch message and so on)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    queues = runtime.actors.queues.all()
    while time.monotonic() < deadline:
        for queue in queues:
            runtime.broker.join(queue, timeout=int(DRAIN_TIMEOUT * 1000))
        if all(runtime.broker.queues[q].qsize() == 0 for q in queues):
            return
    raise RuntimeError(f"the queues did not empty within {DRAIN_TIMEOUT:g}s")


@contextmanager
def _firm(tmp: Path, churn_per_minute: float) -> Iterator[tuple[SandboxServer, Runtime, str]]:
    with ExitStack() as stack:
        server = stack.enter_context(SandboxServer(SandboxConfig(seed=1, churn_per_minute=0)))
        sink = stack.enter_context(children.sink())
        connection = unique("week")
        state_url = f"sqlite:///{tmp / 'state.db'}"
        store = open_store(state_url)
        stack.callback(store.close)
        connect(server.url, store, connection)
        settings = settings_for(
            server.url,
            state_url,
            connection,
            broker_url="memory://",
            rules_dir=_write_rules(tmp, sink.url),
            run_retention_days=1,
            flood_limit=10**9,
            rule_burst_per_minute=10**6,
            http_allowed_hosts=[sink.url.split("://", 1)[1]],
            slack_webhooks={"billing": f"{sink.url}/hooks/billing", "partners": f"{sink.url}/hooks/partners"},
            timezone="America/New_York",
        )
        runtime = Runtime.create(settings, store=store)
        stack.callback(runtime.close)
        runtime.start_workers(4)
        yield server, runtime, connection


def simulate(days: int = DEFAULT_DAYS, churn_per_minute: float = DEFAULT_CHURN) -> dict[str, Any]:
    """Run ``days`` simulated days; returns the per-day state and the verdict."""
    started = time.monotonic()
    result: list[Day] = []
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ppw-week-"))
        clock = stack.enter_context(time_machine.travel(START, tick=True))
        server, runtime, connection = stack.enter_context(_firm(Path(tmp), churn_per_minute))
        assert runtime.registry is not None
        watched = sorted(rules_by_resource(runtime.registry.engine))
        app = runtime.app
        pump = TimerPump(app.store, connection, runtime.actors.send_runs)
        alarms = AlarmPump(app.alarms, connection, runtime.actors.emit, app.rules.versions)
        churn = Churn(server.state, 0)
        per_tick = churn_per_minute * TICK.total_seconds() / 60.0
        owed = 0.0
        ticks_a_day = int(timedelta(days=1) / TICK)
        for resource in watched:  # priming
            runtime.actors.send_poll(connection, resource)
        _drain(runtime)
        for tick in range(days * ticks_a_day):
            clock.shift(TICK)
            owed += per_tick
            while owed >= 1:
                churn.step()
                owed -= 1
            for resource in watched:
                runtime.actors.send_poll(connection, resource)
                if tick % ticks_a_day == ticks_a_day - 1:
                    runtime.actors.send_reconcile(connection, resource)
            _drain(runtime)
            pump.tick()
            alarms.sync()
            alarms.tick()
            _drain(runtime)
            retention.prune(app, connection)
            if tick % ticks_a_day == ticks_a_day - 1:
                usage = usage_by_kind(app.store, connection)
                waiting, waiting_bytes = _waiting(app, connection)
                result.append(
                    Day(
                        day=len(result) + 1,
                        changes=churn.changes,
                        live_records=_live_records(server, watched),
                        waiting_runs=waiting,
                        waiting_bytes=waiting_bytes,
                        bytes_by_kind={u.kind: u.bytes or 0 for u in usage},
                        keys_by_kind={u.kind: u.keys for u in usage},
                    )
                )
    return analyse(result, churn_per_minute, time.monotonic() - started)


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope per day and the stdev of the residuals."""
    if len(points) < 2:
        return 0.0, 0.0
    xs, ys = zip(*points, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    residuals = [y - (my + slope * (x - mx)) for x, y in points]
    return slope, statistics.pstdev(residuals)


def _verdict(points: list[tuple[float, float]], floor: float) -> dict[str, Any]:
    slope, noise = _fit(points)
    span = points[-1][0] - points[0][0] if len(points) > 1 else 0.0
    growth = slope * span
    return {
        "slope_per_day": round(slope, 1),
        "growth": round(growth, 1),
        "noise": round(noise, 1),
        "flat": abs(growth) < max(2 * noise, floor),
    }


def analyse(days: list[Day], churn_per_minute: float, seconds: float) -> dict[str, Any]:
    measured = [d for d in days if d.day > WARMUP_DAYS]
    kinds = sorted({k for d in days for k in d.bytes_by_kind} - {"snap"})
    # Per kind for the record; the waiting runs' records, events and ledger entries are in theirs.
    by_kind = {
        kind: _verdict([(d.day, d.bytes_by_kind.get(kind, 0)) for d in measured], FLOOR) for kind in kinds
    }
    kept = _verdict([(d.day, d.kept) for d in measured], FLOOR)
    per_record = _verdict(
        [(d.day, d.bytes_by_kind.get("snap", 0) / max(d.live_records, 1)) for d in measured], 64
    )
    per_waiting = _verdict([(d.day, d.waiting_bytes / max(d.waiting_runs, 1)) for d in measured], 256)
    return {
        "days": [d.__dict__ | {"total": d.total, "kept": d.kept} for d in days],
        "churn_per_minute": churn_per_minute,
        "retention_days": 1,
        "warmup_days": WARMUP_DAYS,
        "kept": kept,
        "snapshot_bytes_per_record": per_record,
        "bytes_per_waiting_run": per_waiting,
        "by_kind": by_kind,
        "flat": kept["flat"] and per_record["flat"] and per_waiting["flat"],
        "seconds": round(seconds, 1),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{'day':>3} {'changes':>8} {'records':>8} {'snapshots':>10} {'waiting':>8} {'their bytes':>11}"
        f" {'retained bytes':>14}"
    ]
    for d in result["days"]:
        snaps = d["bytes_by_kind"].get("snap", 0)
        lines.append(
            f"{d['day']:>3} {d['changes']:>8} {d['live_records']:>8} {snaps:>10} {d['waiting_runs']:>8}"
            f" {d['waiting_bytes']:>11} {d['kept']:>14}"
        )
    kept, per, waits = result["kept"], result["snapshot_bytes_per_record"], result["bytes_per_waiting_run"]

    def said(verdict: dict[str, Any]) -> str:
        return "flat" if verdict["flat"] else "GROWING"

    lines.append(
        f"after day {result['warmup_days']}: retained {kept['slope_per_day']:+.0f} B/day ({said(kept)}); "
        f"snapshots {per['slope_per_day']:+.1f} B/record/day ({said(per)}); "
        f"waiting runs {waits['slope_per_day']:+.1f} B/run/day ({said(waits)})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.state_week", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    parser.add_argument("--churn", type=float, default=DEFAULT_CHURN, help="changes a minute (default 1)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    result = simulate(args.days, args.churn)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0 if result["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
