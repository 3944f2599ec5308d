"""The durable floor: a bare loop doing the durable work of an embedded event, and nothing else.

The yardstick of the embedded end-to-end figure (memory broker, SQLite state). The no-op
``StubBroker`` ceiling (:mod:`benchmarks.engine_ceiling`) is the wrong one there: an empty
message costs tens of microseconds, while ppw commits each step of a run durably (SQLite, WAL,
``synchronous=FULL``) before and after it acts, which costs hundreds of microseconds per commit
before any Python runs. This loop does, per event, what that durability and the delivery cost
at least:

* ``commits_per_event`` separate write transactions (``BEGIN IMMEDIATE`` … ``COMMIT``), each an
  upsert of a run-record-sized string row and a ledger-sized hash field, in a fresh SQLite file
  with the store's pragmas (WAL, ``synchronous=FULL``) and a connection per thread; a fractional
  count is spread evenly (1.5 is 3 commits every 2 events);
* one keep-alive ``POST`` with an ``Idempotency-Key`` through a urllib3 connection pool (the
  worker's delivery client) to the same sink (:mod:`benchmarks.sink`, its own process).

``threads`` threads (the shipped ``PPW_WORKER_THREADS``) share the events. No broker, no rules,
no templates, no reads: ``events / seconds`` is the most an embedded worker could do with that
much durable work per event on this machine. The sink's count proves every POST arrived.

    python -m benchmarks.durable_floor [events] [commits_per_event] [threads]
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import urllib3

from benchmarks import children
from benchmarks.services import THREADS

#: SQLite write transactions per event of the embedded pipeline, as measured by
#: :func:`benchmarks.throughput.run` (``state_writes_per_event``): one flush of the run's journal per
#: event, plus per run message the lease/turn transactions and the carried last write, plus the
#: poll's and the dispatch's batches. Used when the loop runs alone.
COMMITS_PER_EVENT = 1.56

#: About a run's history record (JSON) and one ledger entry, the bulk of a journal flush.
RECORD_BYTES = 1_500
LEDGER_BYTES = 120

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT, expires_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hash_fields (
    key TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key, field)
) WITHOUT ROWID;
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _commits_for(index: int, per_event: float) -> int:
    """How many commits event ``index`` makes so that ``n`` events make ``round(n * per_event)``."""
    return round((index + 1) * per_event) - round(index * per_event)


def run(
    events: int = 20_000,
    commits_per_event: float = COMMITS_PER_EVENT,
    *,
    threads: int = THREADS,
    sink_url: str | None = None,
) -> dict[str, Any]:
    """``events`` events' durable work on ``threads`` threads; the rate and the sink's count."""
    if sink_url is None:
        with children.sink() as sink:
            return run(events, commits_per_event, threads=threads, sink_url=sink.url)
    before = children.sink_count(sink_url)["received"]
    record = "r" * RECORD_BYTES
    ledger = "l" * LEDGER_BYTES
    body = json.dumps({"matter": "0", "name": "Bench matter", "status": "Open"}).encode()
    host, port = sink_url.split("://", 1)[1].split(":")
    with tempfile.TemporaryDirectory(prefix="ppw-bench-floor-") as tmp:
        path = Path(tmp) / "state.db"
        _connect(path).executescript(_SCHEMA)
        next_event = iter(range(events))
        take = threading.Lock()
        commits = [0] * threads
        errors: list[BaseException] = []
        start = threading.Barrier(threads + 1)

        def work(slot: int) -> None:
            conn = _connect(path)
            pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=1, retries=False)
            try:
                start.wait()
                while True:
                    with take:
                        index = next(next_event, None)
                    if index is None:
                        return
                    for n in range(_commits_for(index, commits_per_event)):
                        conn.execute("BEGIN IMMEDIATE")
                        conn.execute(
                            "INSERT OR REPLACE INTO entries (key, kind, value, expires_at) "
                            "VALUES (?, 'string', ?, ?)",
                            (f"run:{index}", record, time.time() + 86_400),
                        )
                        conn.execute(
                            "INSERT OR REPLACE INTO hash_fields (key, field, value) VALUES (?, ?, ?)",
                            (f"ledger:{index}", f"step:{n}", ledger),
                        )
                        conn.execute("COMMIT")
                        commits[slot] += 1
                    answer = pool.urlopen(
                        "POST",
                        "/hook",
                        body=body,
                        headers={"Content-Type": "application/json", "Idempotency-Key": f"floor-{index}"},
                    )
                    if answer.status != 200:
                        raise RuntimeError(f"the sink answered {answer.status}")
            except BaseException as exc:  # reported below; the other threads finish the events
                errors.append(exc)
            finally:
                pool.close()
                conn.close()

        workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
        for thread in workers:
            thread.start()
        start.wait()
        started = time.perf_counter()
        for thread in workers:
            thread.join()
        seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"the durable floor failed: {errors[0]!r}")
    received = children.sink_count(sink_url)["received"] - before
    return {
        "events": events,
        "threads": threads,
        "commits_per_event": commits_per_event,
        "commits": sum(commits),
        "posts_received": received,
        "seconds": round(seconds, 2),
        "events_per_second": round(events / seconds, 1),
        "commits_per_second": round(sum(commits) / seconds, 1),
    }


def main(argv: list[str]) -> int:
    events = int(argv[0]) if argv else 20_000
    per_event = float(argv[1]) if len(argv) > 1 else COMMITS_PER_EVENT
    threads = int(argv[2]) if len(argv) > 2 else THREADS
    print(json.dumps(run(events, per_event, threads=threads), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
