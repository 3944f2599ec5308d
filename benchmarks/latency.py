"""Detection latency: from a change in the sandbox to its event being handed to the broker.

The whole worker runs (:mod:`benchmarks.pipeline`) with the scheduler at ``PPW_POLL_INTERVAL`` and
the shipped jitter (``PPW_POLL_JITTER``, 5 s); meanwhile matters are created at random moments,
about ``per_second`` a second. For each one, latency = the moment its dispatch message was
enqueued (a Dramatiq ``after_enqueue`` hook, :class:`~benchmarks.instruments.StageClock`) minus
the record's ``updated_at`` written by the sandbox (same host, same clock). Target: p99 ≤
interval + 1 s.

Polling is the only way to see changes (PracticePanther has no webhooks), so the expected
latency is about half an interval, and the worst case an interval plus the jitter plus the time
a poll takes.

    python -m benchmarks.latency [interval] [seconds]
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from typing import Any

from benchmarks.instruments import StageClock
from benchmarks.pipeline import BrokerKind, pipeline
from worker.eventstore import EventNotFound
from worker.polling.snapshots import parse_revision
from worker.process.runtime import wait_until
from worker.settings import Settings

DEFAULT_INTERVAL = Settings.model_fields["poll_interval"].default
DEFAULT_JITTER = Settings.model_fields["poll_jitter"].default


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run(
    interval: float = DEFAULT_INTERVAL,
    seconds: float = 240.0,
    *,
    per_second: float = 2.0,
    jitter: float = DEFAULT_JITTER,
    kind: BrokerKind = "memory",
    seed: int = 5,
) -> dict[str, Any]:
    """Changes at random moments for ``seconds``; latency percentiles of their detection."""
    clock = StageClock()
    rng = random.Random(seed)
    with pipeline(kind, poll_interval=interval, poll_jitter=jitter, middleware=[clock]) as running:
        made: list[str] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(rng.expovariate(per_second))
            [record] = running.admin.create("matters", [{"name": f"Latency {len(made)}", "status": "Open"}])
            made.append(record["id"])
        # The last changes wait for the next poll: give it one interval, the jitter and some slack.
        events = running.runtime.app.events

        def detected() -> bool:
            return len(clock.enqueued) >= len(made)

        wait_until(detected, interval + jitter + 30, interval=0.2)
        latencies: list[float] = []
        for event_id, enqueued in list(clock.enqueued.items()):
            try:
                event = events.load(running.connection, event_id)
            except EventNotFound:
                continue
            changed = parse_revision(event.record.get("updated_at"))
            if changed is not None and event.record_id in made:
                latencies.append(enqueued - changed.timestamp())
    if not latencies:
        raise RuntimeError("no change was detected")
    return {
        "broker": kind,
        "interval": interval,
        "jitter": jitter,
        "duration_seconds": seconds,
        "changes": len(made),
        "detected": len(latencies),
        "p50": round(percentile(latencies, 0.5), 3),
        "p90": round(percentile(latencies, 0.9), 3),
        "p99": round(percentile(latencies, 0.99), 3),
        "max": round(max(latencies), 3),
        "mean": round(statistics.fmean(latencies), 3),
        "target_p99": interval + 1.0,
    }


def main(argv: list[str]) -> int:
    interval = float(argv[0]) if argv else DEFAULT_INTERVAL
    seconds = float(argv[1]) if len(argv) > 1 else max(60.0, interval * 4)
    print(json.dumps(run(interval, seconds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
