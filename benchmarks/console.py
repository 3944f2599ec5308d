"""The console's pages over a real history: 100,000 runs and 10,000 dead letters, both backends.

The store is filled as a busy worker would leave it after a month: 50 rules over 5 resources and
20,000 records, runs spread over four weeks, most succeeded, some skipped, waiting, cancelled,
retrying or paused, and 10,000 dead letters. Each page is then asked for through the real
Starlette app (Starlette's TestClient, signed in, every middleware on) ``REPEATS`` times:

- the overview, the runs list unfiltered and by each filter (status, rule, resource, record id,
  time), the next page of a list, a run's page, the dead letters and the rules page;
- the baseline, measured in the same process on the same store: each list read as the console
  read it before the run history had indexes (the time index newest first, its runs 200 at a
  time, filtered in Python until a page is full; every dead letter, one read each), and the
  floor, ``/favicon.ico`` through the same app (the middleware, session and routing a page pays
  before it reads anything).

Target (#19): every page answers in under 100 ms (p95) on SQLite and on Redis.

    python -m benchmarks.console [runs] [dead_letters]
"""

from __future__ import annotations

import functools
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from starlette.testclient import TestClient

from benchmarks.services import REDIS_URL, namespace, redis_available
from worker.console.auth import hash_password
from worker.console.lists import parse_time
from worker.console.ops import Ops, Readiness
from worker.console.web import build_app
from worker.delivery.app import DeliveryApp
from worker.delivery.history import EventSummary, Run, RunQuery, StepTrace
from worker.delivery.rulebook import EngineRuleBook
from worker.rules.watcher import RuleRegistry
from worker.settings import Settings
from worker.state import StateStore, open_store
from worker.state.base import key

TARGET_MS = 100.0
REPEATS = 30
#: the scan baseline reads up to every run for a rare filter: a few times is enough
SCAN_REPEATS = 3
#: the statuses the Runs page is timed filtered by (#19 names these)
PAGE_STATUSES = ("succeeded", "failed", "dead", "waiting", "cancelled")
RULES = 50
RESOURCES = ("matters", "contacts", "invoices", "tasks", "time_entries")
RECORDS = 20_000
SPAN = 28 * 86_400.0
#: the statuses of the runs that are not dead letters, with their share
MIX = (
    ("succeeded", 0.74),
    ("skipped", 0.12),
    ("waiting", 0.05),
    ("cancelled", 0.03),
    ("retrying", 0.02),
    ("paused", 0.02),
    ("queued", 0.01),
    ("running", 0.01),
)
PASSWORD = "bench console password"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def rule_id(index: int) -> str:
    return f"rule-{index:02d}"


def write_rules(directory: Path) -> None:
    """``RULES`` rules, each on one of the resources (the Rules page lists them all)."""
    for index in range(RULES):
        resource = RESOURCES[index % len(RESOURCES)]
        (directory / f"{rule_id(index)}.yaml").write_text(
            f"id: {rule_id(index)}\n"
            f"description: bench rule {index} on {resource}\n"
            f"trigger:\n  resource: {resource}\n  on: updated\n"
            "steps:\n"
            "  - type: create_task\n"
            "    with:\n"
            '      subject: "Follow up {{ record.id }}"\n'
        )


def _run(connection: str, index: int, now: float, rng: random.Random, status: str) -> Run:
    rule = rng.randrange(RULES)
    resource = RESOURCES[rule % len(RESOURCES)]
    record = f"{resource[:3]}-{rng.randrange(RECORDS // len(RESOURCES)):05d}"
    created = now - rng.random() * SPAN
    summary = EventSummary(
        type="updated", resource=resource, record_id=record, revision=f"r{index}", changed={"status": True}
    )
    request = {"method": "POST", "url": "https://app.practicepanther.com/api/v2/tasks", "json": {"n": index}}
    steps = [
        StepTrace(
            id="task", type="create_task", status="done", attempts=1, duration_ms=85.0, request=request
        ),
        StepTrace(id="tell", type="slack.post", status="pending"),
    ]
    fields: dict[str, Any] = {}
    if status == "dead":
        fields = {
            "error": "step tell failed 5 times: HTTP 500",
            "failed_step": "tell",
            "dead_at": created + 600,
        }
    elif status == "waiting":
        fields = {"wake_at": now + rng.random() * 14 * 86_400, "waiting_step": "tell"}
    return Run(
        id=f"{index:024x}",
        connection=connection,
        event_id=f"ev{index}",
        event=summary,
        rule_id=rule_id(rule),
        rule_version="v1",
        status=status,
        steps=steps,
        attempts=5 if status == "dead" else 1,
        created_at=created,
        started_at=created + 1,
        finished_at=created + 2,
        **fields,
    )


def fill(app: DeliveryApp, connection: str, runs: int, dead: int, *, seed: int = 19) -> dict[str, Any]:
    """``runs`` runs of :data:`MIX` and ``dead`` dead letters, written in batches as the worker
    writes them (the run history's own create and write, so its indexes are what a worker keeps)."""
    rng = random.Random(seed)
    now = time.time()
    statuses = [s for s, _ in MIX]
    weights = [w for _, w in MIX]
    started = time.perf_counter()
    total = runs + dead
    sample: dict[str, Any] = {"rule": None, "resource": None, "record": None, "run": None}
    for start in range(0, total, 1000):
        made = []
        for index in range(start, min(start + 1000, total)):
            status = "dead" if index >= runs else rng.choices(statuses, weights)[0]
            made.append(_run(connection, index, now, rng, status))
        app.history.create_many(made)
        with app.store.batch() as batch:
            for run in made:
                if run.status in ("dead", "waiting"):
                    app.history.write(batch, run)  # no expiry, as the worker keeps them
                if run.status == "dead":
                    batch.zadd(key(connection, "dlq"), {run.id: run.dead_at or run.created_at})
        if sample["run"] is None:
            first = made[0]
            sample = {
                "rule": first.rule_id,
                "resource": first.event.resource,
                "record": first.event.record_id,
                "run": first.id,
            }
    return {"fill_seconds": round(time.perf_counter() - started, 1), "now": now, **sample}


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    #: the list it shows, for the scan baseline (None: not a list of runs)
    query: RunQuery | None = None


def pages(sample: dict[str, Any]) -> list[Page]:
    """Every page the console serves over run history, each filter of the Runs page alone."""
    now = sample["now"]
    since, until = now - 3 * 86_400, now - 2 * 86_400
    text = {
        name: time.strftime("%Y-%m-%dT%H:%M", time.gmtime(at)) for name, at in (("s", since), ("u", until))
    }
    since, until = (parse_time("t", text["s"]), parse_time("t", text["u"]))
    rule, resource, record = sample["rule"], sample["resource"], sample["record"]
    listed = [
        Page("runs", "/runs", RunQuery()),
        *(Page(f"runs status={s}", f"/runs?status={s}", RunQuery(status=s)) for s in PAGE_STATUSES),
        Page("runs rule", f"/runs?rule={rule}", RunQuery(rule=rule)),
        Page("runs resource", f"/runs?resource={resource}", RunQuery(resource=resource)),
        Page("runs record", f"/runs?record={record}", RunQuery(record=record)),
        Page(
            "runs time (one day, 3 days ago)",
            f"/runs?since={text['s']}&until={text['u']}",
            RunQuery(since=since, until=until),
        ),
        Page(
            "runs rule + status=dead",
            f"/runs?rule={rule}&status=dead",
            RunQuery(rule=rule, status="dead"),
        ),
    ]
    return [
        Page("overview", "/"),
        *listed,
        Page("run page", f"/runs/{sample['run']}"),
        Page("dead letters", "/dead-letters"),
        Page("rules", "/rules"),
    ]


def scan(store: StateStore, connection: str, query: RunQuery, size: int = 50) -> list[Run]:
    """A list read as the console read it before the indexes: the time index newest first, its
    runs 200 at a time, filtered here, until a page is full (the baseline of each Runs page)."""
    members = store.zrange_by_score(key(connection, "runs"), query.low, query.high, descending=True)
    found: list[Run] = []
    for start in range(0, len(members), 200):
        raws = store.get_many([key(connection, "run", m) for m, _ in members[start : start + 200]])
        found += [
            run for raw in raws if raw is not None and query.matches(run := Run.model_validate_json(raw))
        ]
        if len(found) > size:
            break
    return found[:size]


def scan_dead_letters(store: StateStore, connection: str) -> int:
    """The dead letters read as before they paged: every one, one read each."""
    ids = [m for m, _ in store.zrange_by_score(key(connection, "dlq"))]
    return sum(store.get(key(connection, "run", m)) is not None for m in ids)


def _timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    took = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        took.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(took), 2), "p95_ms": round(_percentile(took, 0.95), 2)}


def _sign_in(http: TestClient) -> None:
    token = CSRF.search(http.get("/login").text)
    assert token, "no CSRF token on the login page"
    answer = http.post("/login", data={"csrf": token.group(1), "username": "bench", "password": PASSWORD})
    assert answer.status_code == 303, f"sign-in failed: {answer.status_code}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time(http: TestClient, path: str, repeats: int) -> dict[str, Any]:
    first = http.get(path)
    status = first.status_code
    took: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = http.get(path)
        took.append((time.perf_counter() - started) * 1000)
        status = answer.status_code
    next_link = re.search(r'href="(/runs\?[^"]*(?:after|page)=[^"]+)"', first.text)
    return {
        "path": path,
        "status": status,
        "bytes": len(first.content),
        "p50_ms": round(statistics.median(took), 2),
        "p95_ms": round(_percentile(took, 0.95), 2),
        "next": next_link.group(1).replace("&amp;", "&") if next_link else None,
    }


@contextmanager
def console(store: StateStore, connection: str, rules: Path) -> Iterator[tuple[Ops, TestClient]]:
    settings = Settings(
        _env_file=None,
        state_url=store.url,
        connection_id=connection,
        rules_dir=rules,
        console_enabled=True,
        console_secret=SecretStr("bench-console-secret-0123456789abcdef"),
        console_users={"bench": SecretStr(f"operator:{hash_password(PASSWORD)}")},
        run_retention_days=35,
    )
    registry = RuleRegistry(settings=settings)
    registry.load()
    app = DeliveryApp.create(settings, store, EngineRuleBook(lambda: registry.engine, settings))
    ops = Ops(
        settings=settings,
        app=app,
        send_run=lambda _c, _r: None,
        emit=lambda _events: None,
        readiness=lambda: Readiness(True, {}, "bench"),
        ruleset=lambda: registry.ruleset,
    )
    with TestClient(build_app(ops), follow_redirects=False) as http:
        _sign_in(http)
        yield ops, http


def measure(store: StateStore, connection: str, runs: int, dead: int, rules: Path) -> dict[str, Any]:
    with console(store, connection, rules) as (ops, http):
        sample = fill(ops.app, connection, runs, dead)
        floor = _time(http, "/favicon.ico", REPEATS)
        results: dict[str, Any] = {}
        for page in pages(sample):
            results[page.name] = result = _time(http, page.path, REPEATS)
            if page.query is not None:
                result["scan"] = _timed(functools.partial(scan, store, connection, page.query), SCAN_REPEATS)
            elif page.name == "dead letters":
                result["scan"] = _timed(functools.partial(scan_dead_letters, store, connection), SCAN_REPEATS)
            if page.name in ("runs", "runs rule") and result["next"]:
                results[f"{page.name}, next page"] = _time(http, result["next"], REPEATS)
        state_bytes = store.size_bytes(f"ppw:{connection}:")
    return {
        "fill_seconds": sample["fill_seconds"],
        "state_bytes": state_bytes,
        "floor": floor,
        "pages": results,
    }


def run_benchmark(runs: int = 100_000, dead: int = 10_000, *, redis_url: str = REDIS_URL) -> dict[str, Any]:
    backends: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ppw-bench-console-") as tmp:
        rules = Path(tmp) / "rules"
        rules.mkdir()
        write_rules(rules)
        for backend in ("sqlite", "redis"):
            if backend == "redis" and (missing := redis_available(redis_url)):
                backends.append({"backend": backend, "skipped": missing})
                continue
            with namespace(redis_url if backend == "redis" else None) as ns:
                url = redis_url if backend == "redis" else f"sqlite:///{Path(tmp) / 'console.db'}"
                store = open_store(url)
                try:
                    result = measure(store, ns.connection, runs, dead, rules)
                finally:
                    store.close()
            backends.append({"backend": backend, **result})
    return {
        "runs": runs,
        "dead_letters": dead,
        "repeats": REPEATS,
        "target_ms": TARGET_MS,
        "backends": backends,
    }


def summary(result: dict[str, Any]) -> str:
    """The table ``main`` prints: per backend and page, p50/p95 beside the scan baseline."""
    lines = [
        f"{result['runs']:,} runs, {result['dead_letters']:,} dead letters; target p95 < {TARGET_MS:g} ms"
    ]
    for backend in result["backends"]:
        if backend.get("skipped"):
            lines.append(f"{backend['backend']}: skipped ({backend['skipped']})")
            continue
        floor = backend.get("floor") or backend.get("baseline") or {}
        lines.append(f"\n{backend['backend']}: /favicon.ico p50 {floor.get('p50_ms')} ms")
        for name, page in backend["pages"].items():
            scanned = f"  scan p50 {page['scan']['p50_ms']:>9} ms" if "scan" in page else ""
            timing = f"p50 {page['p50_ms']:>7} ms  p95 {page['p95_ms']:>7} ms"
            lines.append(f"  {name:<34} {timing}  {page['status']}{scanned}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 100_000
    dead = int(argv[1]) if len(argv) > 1 else 10_000
    result = run_benchmark(runs, dead)
    print(json.dumps(result, indent=2))
    print(summary(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
