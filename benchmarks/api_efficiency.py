"""API efficiency: PracticePanther requests per idle poll (target: exactly 1) and per 1,000 changes.

PracticePanther has no webhooks, so every integration polls, and the requests it spends are the
cost an account pays for being watched. Counted by the sandbox's request log (the server's view,
not the client's claim) while a real :class:`~worker.polling.poller.Poller` with a real
:class:`~worker.practicepanther.client.PracticePantherClient` polls ``matters``:

- idle: polls with nothing changed since the last one, the account's recent history spread out
  (one change every two seconds) as usual;
- burst: 1,000 changed records, then one poll;
- idle after the burst: polls with nothing new after the burst. The next poll asks for
  ``updated_at ge cursor - overlap`` and the cursor is the newest change, so every idle poll
  re-reads the whole burst until a newer change moves the cursor on (the overlap is there for
  late commits and clock skew);
- spread: the same 1,000 changes arriving over ten polls, 100 between each (the usual case, where
  the overlap window makes each poll re-read the previous poll's changes).

Run with ``sweep_interval=0`` every poll is a sweep and re-reads the overlap (what every poll does
at the default 60-second interval, ``PPW_POLL_SWEEP_INTERVAL`` being 30); with a long
``sweep_interval`` the polls after the first are the ones between sweeps (a short poll interval),
which read from the cursor on.

Baseline (same run): the fewest requests that could carry those changes, ``ceil(changes / page)``.

    python -m benchmarks.api_efficiency [changes]
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.sandbox_tools import Admin, connect, settings_for
from benchmarks.services import unique
from worker.events import Event
from worker.polling.poller import Poller, PollOptions
from worker.practicepanther.client import PracticePantherClient
from worker.sandbox import SandboxConfig, SandboxServer
from worker.state import open_store

RESOURCE = "matters"
IDLE_POLLS = 10
SPREAD_POLLS = 10
#: The records are created in the past, one every ``SPACING`` seconds up to ``BACKDATE`` ago, as an
#: account's history is: at most a page of them falls in any overlap window.
BACKDATE = 3_600
SPACING = 2.0


def _poller(
    client: PracticePantherClient, store: Any, connection: str, page_size: int, sweep_interval: float
) -> Poller:
    options = PollOptions(page_size=page_size, flood_limit=10**9, sweep_interval=sweep_interval)
    return Poller(client, store, connection=connection, options=options)


def run(changes: int = 1_000, page_size: int = 200, sweep_interval: float = 0.0) -> dict[str, Any]:
    """Idle, burst and spread request counts for ``changes`` changed records."""
    connection = unique()
    emitted: list[Event] = []
    with (
        tempfile.TemporaryDirectory(prefix="ppw-bench-api-") as tmp,
        SandboxServer(SandboxConfig(seed=1)) as sandbox,
    ):
        state_url = f"sqlite:///{Path(tmp) / 'state.db'}"
        store = open_store(state_url)
        admin = Admin(sandbox.url)
        settings = settings_for(sandbox, state_url, connection, rate_limit_per_second=0)
        client = PracticePantherClient(settings, store, connection=connection)
        try:
            connect(sandbox, store, connection)
            poller = _poller(client, store, connection, page_size, sweep_interval)
            created = admin.mutate(
                [
                    {
                        "op": "create",
                        "resource": RESOURCE,
                        "data": {"name": f"Bench {i}", "status": "Open"},
                        "backdate_seconds": BACKDATE + (changes - i) * SPACING,
                    }
                    for i in range(changes)
                ]
            )
            ids = [m["id"] for m in created]
            primed = poller.poll(RESOURCE, emitted.extend)

            def counted(action: Any) -> tuple[int, Any]:
                mark = admin.mark()
                result = action()
                return len(admin.requests(mark)), result

            idle = [counted(lambda: poller.poll(RESOURCE, emitted.extend))[0] for _ in range(IDLE_POLLS)]

            admin.update(RESOURCE, [(rid, {"status": "Pending"}) for rid in ids])
            burst_requests, burst = counted(lambda: poller.poll(RESOURCE, emitted.extend))
            after_burst = [counted(lambda: poller.poll(RESOURCE, emitted.extend))[0] for _ in range(3)]

            spread_requests = 0
            spread_events = 0
            chunk = math.ceil(changes / SPREAD_POLLS)
            for start in range(0, changes, chunk):
                admin.update(RESOURCE, [(rid, {"status": "Closed"}) for rid in ids[start : start + chunk]])
                count, result = counted(lambda: poller.poll(RESOURCE, emitted.extend))
                spread_requests += count
                spread_events += len(result.events)
        finally:
            client.close()
            admin.close()
            store.close()
    minimum = math.ceil(changes / page_size)
    return {
        "resource": RESOURCE,
        "page_size": page_size,
        "sweep_interval": sweep_interval,
        "primed_records": primed.records,
        "idle_polls": IDLE_POLLS,
        "idle_requests": idle,
        "requests_per_idle_poll": sum(idle) / len(idle),
        "changes": changes,
        "burst_events": len(burst.events),
        "burst_requests": burst_requests,
        "burst_requests_per_1000_changes": round(burst_requests * 1000 / changes, 2),
        "idle_after_burst_requests": after_burst,
        "overlap_seconds": PollOptions().overlap,
        "spread_polls": SPREAD_POLLS,
        "spread_events": spread_events,
        "spread_requests": spread_requests,
        "spread_requests_per_1000_changes": round(spread_requests * 1000 / changes, 2),
        "minimum_requests_per_1000_changes": round(minimum * 1000 / changes, 2),
    }


def main(argv: list[str]) -> int:
    changes = int(argv[0]) if argv else 1_000
    print(json.dumps(run(changes), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
