"""A reconcile at 100,000 tracked records: requests and time, as ``ppw poll reconcile`` runs it.

A reconcile (:mod:`worker.polling.reconcile`) lists every id and fetches each missing record, so
its cost is requests and time per resource per day. Measured in child processes against
:mod:`benchmarks.bulk_listing` after a real priming of the same records, with 50 of them deleted:

- wall time and requests with ``$select=id`` pages, beside the floor: the same id pages and the
  same 50 GETs by a bare HTTP loop (no client, no rate limit, no state);
- the same with ``$select`` refused (whole pages, the fallback), beside the same floor;
- peak RSS of the reconciling process.

Both run at the shipped ``PPW_RATE_LIMIT_PER_SECOND`` (which alone sets a minimum time: the
figures note it) and unthrottled; SQLite and Redis.

    python -m benchmarks.reconcile [records]
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
from benchmarks.worker_process import clean_env, describe_failure, json_output, ppw_command, run, store_tokens
from worker.practicepanther import resources
from worker.settings import Settings

RESOURCE = "matters"
DELETED = 50
PAGE_SIZE: int = Settings.model_fields["reconcile_page_size"].default
DEFAULT_RATE: float = Settings.model_fields["rate_limit_per_second"].default


def _env(
    server_url: str, state_url: str, connection: str, workdir: Path, rate: float | None
) -> dict[str, str]:
    rules_dir = workdir / "no-rules"
    rules_dir.mkdir(exist_ok=True)
    values = {
        "PPW_PP_BASE_URL": server_url,
        "PPW_STATE_URL": state_url,
        "PPW_CONNECTION_ID": connection,
        "PPW_BROKER_URL": "memory://",
        "PPW_RULES_DIR": str(rules_dir),
        "PPW_LOG_LEVEL": "WARNING",
        "PPW_FLOOD_LIMIT": str(DELETED * 2),
    }
    if rate is not None:
        values["PPW_RATE_LIMIT_PER_SECOND"] = str(rate)
    return clean_env(values)


def _ppw(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], Any]:
    finished = run(ppw_command(*args, "--json"), env)
    if finished.returncode != 0:
        raise RuntimeError(f"ppw {' '.join(args)} failed: {describe_failure(finished)}")
    return json_output(finished), finished


def reconcile_backend(
    records: list[dict[str, Any]], *, backend: str, workdir: Path, redis_url: str = REDIS_URL
) -> dict[str, Any]:
    """Prime, delete :data:`DELETED` records, then reconcile with ids, with pages, throttled or not."""
    listing = BulkListing(RESOURCE, records)
    out: dict[str, Any] = {"backend": backend, "runs": []}
    with namespace(redis_url if backend == "redis" else None) as ns, BulkListingServer(listing) as server:
        state_url = redis_url if backend == "redis" else f"sqlite:///{workdir / ns.connection}.db"
        store_tokens(state_url, ns.connection)
        primed, _ = _ppw(
            ["poll", "once", RESOURCE], _env(server.url, state_url, ns.connection, workdir, 1000.0)
        )
        out["primed"] = primed["records"]
        gone = set(listing.ids[:: max(len(listing) // DELETED, 1)][:DELETED])
        listing.delete(gone)
        for listing_kind, refuse in (("ids", False), ("whole pages", True)):
            for rate in (None, 1000.0):
                listing.refuse_select = refuse
                before = server.requests
                # a dry run confirms as a real one does, and leaves the deletions for the next run
                result, finished = _ppw(
                    ["poll", "reconcile", RESOURCE, "--dry-run"],
                    _env(server.url, state_url, ns.connection, workdir, rate),
                )
                if len(result["events"]) != len(gone):
                    raise RuntimeError(f"expected {len(gone)} deletions, found {len(result['events'])}")
                out["runs"].append(
                    {
                        "listing": listing_kind,
                        "rate_limit_per_second": rate,
                        "requests": server.requests - before,
                        "seconds": round(finished.seconds, 2),
                        "peak_rss_mb": round(finished.peak_rss_mb, 1),
                        "deleted": len(result["events"]),
                        "floor": floor_in_child(server.url, sorted(gone), select=not refuse),
                    }
                )
    return out


def fetch_floor(url: str, path: str, deleted: list[str], *, select: bool) -> dict[str, Any]:
    """The I/O floor: the id pages (or whole pages) and a GET of each deleted id, by a bare loop."""
    started = time.perf_counter()
    requests = listed = 0
    params: dict[str, Any] = {"$top": PAGE_SIZE}
    if select:
        params["$select"] = "id"
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer floor"}, timeout=30) as client:
        skip = 0
        while True:
            page = client.get(path, params={**params, "$skip": skip}).json()
            requests += 1
            listed += len(page)
            if len(page) < PAGE_SIZE:
                break
            skip += len(page)
        for rid in deleted:
            client.get(f"{path}/{rid}")
            requests += 1
    return {"seconds": round(time.perf_counter() - started, 3), "requests": requests, "listed": listed}


def floor_in_child(url: str, deleted: list[str], *, select: bool) -> dict[str, Any]:
    path = resources.get(RESOURCE).path
    args = [sys.executable, "-m", "benchmarks.reconcile", "--floor", url, path, "1" if select else "0"]
    finished = run([*args, *deleted], clean_env({}))
    if finished.returncode != 0:
        raise RuntimeError(f"floor loop failed: {describe_failure(finished)}")
    result: dict[str, Any] = json_output(finished)
    return result


def run_benchmark(count: int = 100_000, *, redis_url: str = REDIS_URL) -> dict[str, Any]:
    records = make_records(RESOURCE, count)
    redis_missing = redis_available(redis_url)
    backends: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ppw-bench-reconcile-") as tmp:
        for backend in ("sqlite", "redis"):
            if backend == "redis" and redis_missing:
                backends.append({"backend": backend, "skipped": redis_missing})
                continue
            backends.append(
                reconcile_backend(records, backend=backend, workdir=Path(tmp), redis_url=redis_url)
            )
    return {
        "resource": RESOURCE,
        "records": count,
        "deleted": DELETED,
        "page_size": PAGE_SIZE,
        "default_rate": DEFAULT_RATE,
        "backends": backends,
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--floor":
        url, path, select, deleted = argv[1], argv[2], argv[3] == "1", argv[4:]
        print(json.dumps(fetch_floor(url, path, deleted, select=select)))
        return 0
    count = int(argv[0]) if argv else 100_000
    print(json.dumps(run_benchmark(count), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
