"""Priming: the first poll of a resource with 100,000 records, as ``ppw poll once matters`` runs it.

Priming reads every record and stores a snapshot of each (no events fire), so it is the biggest
single job a worker ever does, and the one that decides memory and state size. Measured in a child
process (``python -m worker poll once matters --json``) against :mod:`benchmarks.bulk_listing`, so
the figures are the worker's alone:

- wall time, beside the floor: the same pages fetched by a bare HTTP loop in a child process;
- peak RSS, beside the same command priming an empty list (interpreter, imports, clients);
- state bytes per tracked record, beside the record's own JSON size (realistic matters of ~2.2 KB,
  see :func:`benchmarks.bulk_listing.make_records`; each snapshot holds the whole record).

Runs with the shipped defaults (``PPW_POLL_PAGE_SIZE``, ``PPW_RATE_LIMIT_PER_SECOND=5``) on
SQLite and Redis, and with 200-record pages on SQLite. Targets: ≤ 60 s, ≤ 200 MB, ≤ 300 bytes.

    python -m benchmarks.priming [records]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bulk_listing import BulkListing, BulkListingServer, make_records
from benchmarks.services import REDIS_URL, namespace, redis_available
from benchmarks.worker_process import (
    clean_env,
    describe_failure,
    directory_bytes,
    json_output,
    ppw_command,
    run,
    store_tokens,
)
from worker.polling import cursors
from worker.practicepanther import resources
from worker.settings import Settings
from worker.state import open_store

RESOURCE = "matters"
TARGET_SECONDS = 60.0
TARGET_RSS_MB = 200.0
TARGET_BYTES_PER_RECORD = 300.0

#: The shipped PPW_POLL_PAGE_SIZE, read from the settings so the "defaults" row stays honest.
DEFAULT_PAGE_SIZE: int = Settings.model_fields["poll_page_size"].default

#: (label, backend, page size, rate limit per second or None for the default)
CONFIGURATIONS: tuple[tuple[str, str, int, float | None], ...] = (
    ("defaults", "sqlite", DEFAULT_PAGE_SIZE, None),
    ("page 200", "sqlite", 200, None),
    ("defaults", "redis", DEFAULT_PAGE_SIZE, None),
)


def prime(
    server_url: str,
    *,
    backend: str,
    page_size: int,
    rate: float | None,
    workdir: Path,
    redis_url: str = REDIS_URL,
) -> dict[str, Any]:
    """One ``ppw poll once`` priming in a child process; what it took and what it stored."""
    with namespace(redis_url if backend == "redis" else None) as ns:
        db_path = workdir / f"{ns.connection}.db"
        state_url = redis_url if backend == "redis" else f"sqlite:///{db_path}"
        store_tokens(state_url, ns.connection)
        rules_dir = workdir / "no-rules"
        rules_dir.mkdir(exist_ok=True)
        values = {
            "PPW_PP_BASE_URL": server_url,
            "PPW_STATE_URL": state_url,
            "PPW_CONNECTION_ID": ns.connection,
            "PPW_BROKER_URL": "memory://",
            "PPW_RULES_DIR": str(rules_dir),
            "PPW_POLL_PAGE_SIZE": str(page_size),
            "PPW_LOG_LEVEL": "WARNING",
        }
        if rate is not None:
            values["PPW_RATE_LIMIT_PER_SECOND"] = str(rate)
        finished = run(ppw_command("poll", "once", RESOURCE, "--json"), clean_env(values))
        if finished.returncode != 0:
            raise RuntimeError(f"ppw poll once failed: {describe_failure(finished)}")
        output = json_output(finished)
        store = open_store(state_url)
        try:
            state_bytes = store.size_bytes(f"ppw:{ns.connection}:")
            snapshots = store.hlen(cursors.snapshot_key(ns.connection, RESOURCE))
            cursor = cursors.load_cursor(store, ns.connection, RESOURCE)
        finally:
            store.close()
        return {
            "backend": backend,
            "page_size": page_size,
            "rate_limit_per_second": rate,
            "outcome": output["outcome"],
            "records": output["records"],
            "requests": output["requests"],
            "snapshots": snapshots,
            "cursor": cursor.position.isoformat() if cursor and cursor.position else None,
            "seconds": round(finished.seconds, 2),
            "cpu_seconds": round(finished.cpu_seconds, 2),
            "peak_rss_mb": round(finished.peak_rss_mb, 1),
            "state_bytes": state_bytes,
            "state_bytes_per_record": round(state_bytes / max(snapshots, 1), 1),
            "sqlite_file_bytes": directory_bytes(db_path) if backend == "sqlite" else None,
        }


def fetch_floor(url: str, path: str, page_size: int) -> dict[str, Any]:
    """The I/O floor: every page fetched by a bare loop (no client logic, no rate limit, no state)."""
    started = time.perf_counter()
    requests = records = 0
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer floor"}, timeout=30) as client:
        skip = 0
        while True:
            response = client.get(
                path, params={"$orderby": "updated_at,id", "$top": page_size, "$skip": skip}
            )
            response.raise_for_status()
            page = response.json()
            requests += 1
            records += len(page)
            if len(page) < page_size:
                break
            skip += len(page)
    return {"seconds": round(time.perf_counter() - started, 3), "requests": requests, "records": records}


def floor_in_child(url: str, page_size: int) -> dict[str, Any]:
    path = resources.get(RESOURCE).path
    finished = run(
        [sys.executable, "-m", "benchmarks.priming", "--floor", url, path, str(page_size)],
        clean_env({}),
    )
    if finished.returncode != 0:
        raise RuntimeError(f"floor loop failed: {describe_failure(finished)}")
    result: dict[str, Any] = json_output(finished)
    return result


def run_benchmark(records: int = 100_000, *, redis_url: str = REDIS_URL) -> dict[str, Any]:
    """Every configuration in :data:`CONFIGURATIONS` plus the baselines, as one result dict."""
    started = time.perf_counter()
    made = make_records(RESOURCE, records)
    listing = BulkListing(RESOURCE, made)
    record_json_bytes = sum(len(e) for e in listing.encoded) / max(len(listing), 1)
    make_seconds = time.perf_counter() - started
    redis_missing = redis_available(redis_url)
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="ppw-bench-prime-") as tmp,
        BulkListingServer(listing) as server,
        BulkListingServer(BulkListing(RESOURCE, [])) as empty,
    ):
        workdir = Path(tmp)
        idle = prime(empty.url, backend="sqlite", page_size=200, rate=None, workdir=workdir)
        floors = {size: floor_in_child(server.url, size) for size in sorted({c[2] for c in CONFIGURATIONS})}
        for label, backend, page_size, rate in CONFIGURATIONS:
            if backend == "redis" and redis_missing:
                runs.append({"label": label, "backend": backend, "skipped": redis_missing})
                continue
            result = prime(
                server.url,
                backend=backend,
                page_size=page_size,
                rate=rate,
                workdir=workdir,
                redis_url=redis_url,
            )
            result["label"] = label
            result["floor_seconds"] = floors[page_size]["seconds"]
            # a snapshot holds the whole record (compressed): its cost beside the record's own JSON
            result["state_per_record_json"] = round(result["state_bytes_per_record"] / record_json_bytes, 3)
            runs.append(result)
    return {
        "resource": RESOURCE,
        "records": records,
        "record_json_bytes": round(record_json_bytes, 1),
        "setup_seconds": round(make_seconds, 2),
        "empty_list_run": idle,
        "floors": floors,
        "runs": runs,
        "targets": {
            "seconds": TARGET_SECONDS,
            "peak_rss_mb": TARGET_RSS_MB,
            "state_bytes_per_record": TARGET_BYTES_PER_RECORD,
        },
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--floor":
        url, path, page_size = argv[1], argv[2], int(argv[3])
        print(json.dumps(fetch_floor(url, path, page_size)))
        return 0
    records = int(argv[0]) if argv else 100_000
    print(json.dumps(run_benchmark(records), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
