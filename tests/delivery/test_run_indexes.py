"""The run history's indexes on both backends: lists by status, rule, resource, record and time
read an index (never a scan), page by position, follow a run through its statuses, forget a run
with its record, survive a backup, and are built once for a store written before they existed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from worker.delivery.history import (
    FAILED,
    INDEXED_STATUSES,
    Position,
    Run,
    RunHistory,
    RunQuery,
)
from worker.delivery.history import EventSummary as Summary
from worker.state import export_state, import_state
from worker.state.base import StateStore, key
from worker.state.sqlite import SqliteStore

NOW = time.time()
DAY = 86_400.0


def _run(connection: str, n: int, *, rule: str = "r1", resource: str = "matters", record: str = "m1",
         status: str = "succeeded", age: float = 0.0) -> Run:  # fmt: skip
    return Run(
        id=f"run{n:06d}",
        connection=connection,
        event_id=f"e{n}",
        event=Summary(type="updated", resource=resource, record_id=record, revision=str(n)),
        rule_id=rule,
        rule_version="v1",
        status=status,  # type: ignore[arg-type]
        created_at=NOW - age,
    )


def _ids(runs: list[Run]) -> list[str]:
    return [r.id for r in runs]


def _index_keys(store: StateStore, connection: str) -> set[str]:
    return set(store.scan(key(connection, "runs-by"))) | set(store.scan(key(connection, "runs-attrs")))


def test_each_filter_reads_its_index(store: StateStore, connection_id: str) -> None:
    history = RunHistory(store, retention=DAY)
    runs = [
        _run(connection_id, 1, rule="a", resource="matters", record="m1", age=50),
        _run(connection_id, 2, rule="b", resource="contacts", record="c1", status="dead", age=40),
        _run(connection_id, 3, rule="a", resource="matters", record="m2", status="waiting", age=30),
        _run(connection_id, 4, rule="b", resource="matters", record="m1", status="retrying", age=20),
        _run(connection_id, 5, rule="a", resource="contacts", record="c1", status="cancelled", age=10),
        _run(connection_id, 6, rule="a", resource="matters", record="m1", status="queued", age=5),
    ]
    assert history.create_many(runs) == {r.id for r in runs}

    def listed(**filters: object) -> list[str]:
        return _ids(history.page(connection_id, RunQuery(**filters)).runs)  # type: ignore[arg-type]

    assert listed() == ["run000006", "run000005", "run000004", "run000003", "run000002", "run000001"]
    assert listed(status="succeeded") == ["run000001"]
    assert listed(status="dead") == ["run000002"]
    assert listed(status=FAILED) == ["run000004", "run000002"]  # retrying or dead
    assert listed(status="queued") == ["run000006"]  # from the index of active runs
    assert listed(rule="a") == ["run000006", "run000005", "run000003", "run000001"]
    assert listed(resource="contacts") == ["run000005", "run000002"]
    assert listed(record="m1") == ["run000006", "run000004", "run000001"]
    assert listed(rule="a", resource="matters", status="waiting") == ["run000003"]
    assert listed(since=NOW - 35, until=NOW - 15) == ["run000004", "run000003"]
    assert listed(rule="b", since=NOW - 30) == ["run000004"]
    assert listed(rule="nobody") == []
    with pytest.raises(ValueError, match="unknown status 'bogus'"):
        RunQuery(status="bogus")


def test_a_run_moves_between_status_indexes_as_it_is_written(store: StateStore, connection_id: str) -> None:
    history = RunHistory(store, retention=DAY)
    run = _run(connection_id, 1, status="queued")
    history.create(run)
    for status in ("running", "waiting", "running", "retrying", "dead", "queued", "succeeded"):
        run = run.model_copy(update={"status": status})
        history.save(run)
        for indexed in (*INDEXED_STATUSES, FAILED):
            members = {m for m, _ in store.zrange_by_score(history.by(connection_id, "status", indexed))}
            expected = indexed == status or (indexed == FAILED and status in ("retrying", "dead"))
            assert (run.id in members) is expected, (status, indexed)
    assert _ids(history.page(connection_id, RunQuery(status="succeeded")).runs) == [run.id]
    assert history.page(connection_id, RunQuery(status="dead")).runs == []


def test_a_stale_status_entry_is_checked_and_dropped(store: StateStore, connection_id: str) -> None:
    """An entry a backfill wrote as a run left that status is not listed, and leaves the index."""
    history = RunHistory(store, retention=DAY)
    run = _run(connection_id, 1, status="succeeded")
    history.create(run)
    waiting = history.by(connection_id, "status", "waiting")
    store.zadd(waiting, {run.id: run.created_at})
    assert history.page(connection_id, RunQuery(status="waiting")).runs == []
    assert store.zcard(waiting) == 0


def test_pages_follow_positions_both_ways_without_gaps_or_repeats(
    store: StateStore, connection_id: str
) -> None:
    history = RunHistory(store, retention=DAY)
    # 130 runs, some created in the same instant (ties on the score are ordered by id)
    runs = [_run(connection_id, n, rule="a" if n % 3 else "b", age=float(n // 4)) for n in range(130)]
    history.create_many(runs)
    expected = _ids(sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True))

    seen: list[str] = []
    pages = []
    page = history.page(connection_id, size=50)
    assert page.previous is None
    while True:
        pages.append(page)
        seen += _ids(page.runs)
        if page.next is None:
            break
        page = history.page(connection_id, after=page.next, size=50)
    assert seen == expected and [len(p.runs) for p in pages] == [50, 50, 30]
    back = history.page(connection_id, before=pages[2].previous, size=50)
    assert _ids(back.runs) == _ids(pages[1].runs)
    first = history.page(connection_id, before=back.previous, size=50)
    assert _ids(first.runs) == _ids(pages[0].runs) and first.previous is None

    by_rule = [r for r in expected if int(r[3:]) % 3 == 0]
    top = history.page(connection_id, RunQuery(rule="b"), size=20)
    rest = history.page(connection_id, RunQuery(rule="b"), after=top.next, size=50)
    assert _ids(top.runs) + _ids(rest.runs) == by_rule and rest.next is None


def test_the_smallest_index_answers_and_a_rare_match_stops_at_the_scan_limit(
    store: StateStore, connection_id: str
) -> None:
    history = RunHistory(store, retention=DAY)
    runs = [_run(connection_id, n, rule="busy", status="succeeded", age=float(n)) for n in range(60)]
    runs += [_run(connection_id, 100, rule="busy", status="skipped", age=100.0)]
    history.create_many(runs)
    # the status index (one entry) is smaller than the rule's (61): one entry read
    found = history.page(connection_id, RunQuery(rule="busy", resource="matters", status="skipped"))
    assert _ids(found.runs) == ["run000100"] and found.searched == 1 and not found.limited

    # the rule's index, checked for the status: stops after 25 entries, says so, goes on from there
    by_rule, skipped = history.by(connection_id, "rule", "busy"), RunQuery(status="skipped")
    page = history.walk(connection_id, by_rule, skipped, size=5, scan_limit=25)
    assert page.runs == [] and page.limited and page.searched == 25 and page.next is not None
    found_ids = []
    while page.next is not None:
        page = history.walk(connection_id, by_rule, skipped, after=page.next, size=5, scan_limit=25)
        found_ids += _ids(page.runs)
    assert found_ids == ["run000100"]
    # ``ppw runs list`` has no limit: every match
    assert _ids(history.recent(connection_id, rule="busy", status="skipped", limit=10)) == ["run000100"]
    assert len(history.recent(connection_id, since=NOW - 1000, limit=100)) == 61


def test_rule_activity_is_the_newest_run_and_a_count_of_the_last_day(
    store: StateStore, connection_id: str
) -> None:
    history = RunHistory(store, retention=3 * DAY)
    history.create_many(
        [
            _run(connection_id, 1, rule="a", age=2 * DAY),
            _run(connection_id, 2, rule="a", age=3600),
            _run(connection_id, 3, rule="a", age=60),
            _run(connection_id, 4, rule="b", age=1.5 * DAY),
        ]
    )
    activity = history.rule_activity(connection_id, ["a", "b", "never"], since=NOW - DAY)
    assert activity["a"] == (pytest.approx(NOW - 60), 2)
    assert activity["b"] == (pytest.approx(NOW - 1.5 * DAY), 0)
    assert activity["never"] == (None, 0)


def test_forgetting_gone_runs_clears_every_index(store: StateStore, connection_id: str) -> None:
    history = RunHistory(store, retention=600)
    old = [_run(connection_id, n, rule=f"r{n}", record=f"m{n}", status=s, age=3600)
           for n, s in enumerate(("succeeded", "retrying", "skipped"))]  # fmt: skip
    history.create_many(old)
    assert _index_keys(store, connection_id)
    store.delete(*(history.key(connection_id, r.id) for r in old))  # as their expiry does
    assert history.prune(connection_id) == 3
    assert _index_keys(store, connection_id) == set()
    assert store.zcard(key(connection_id, "runs")) == 0


def test_a_list_forgets_a_run_whose_record_expired(store: StateStore, connection_id: str) -> None:
    history = RunHistory(store, retention=DAY)
    kept, gone = _run(connection_id, 1, rule="a"), _run(connection_id, 2, rule="a", record="m9")
    history.create_many([kept, gone])
    store.delete(history.key(connection_id, gone.id))  # as its expiry would
    assert _ids(history.page(connection_id, RunQuery(rule="a")).runs) == [kept.id]
    assert store.zcard(history.by(connection_id, "record", "m9")) == 0
    assert store.hget(key(connection_id, "runs-attrs"), gone.id) is None


def _legacy(store: StateStore, history: RunHistory, connection: str) -> None:
    """Remove what this version adds, leaving the store as an older ppw wrote it."""
    for k in _index_keys(store, connection) | {key(connection, "indexed", "runs")}:
        store.delete(k)


def test_a_store_from_before_the_indexes_gets_them_once(store: StateStore, connection_id: str) -> None:
    writer = RunHistory(store, retention=DAY)
    runs = [_run(connection_id, n, rule=f"r{n % 3}", status=("dead" if n % 4 == 0 else "succeeded"),
                 age=float(n)) for n in range(1200)]  # fmt: skip
    for start in range(0, len(runs), 500):
        writer.create_many(runs[start : start + 500])
    before = {
        k: store.zcard(k) for k in store.scan(key(connection_id, "runs-by")) if store.key_type(k) == "zset"
    }
    _legacy(store, writer, connection_id)

    history = RunHistory(store, retention=DAY)  # a process of the new version starting
    page = history.page(connection_id, RunQuery(rule="r1", status="dead"))
    assert _ids(page.runs) == _ids([r for r in runs if r.rule_id == "r1" and r.status == "dead"][:50])
    after = {
        k: store.zcard(k) for k in store.scan(key(connection_id, "runs-by")) if store.key_type(k) == "zset"
    }
    assert after == before
    assert store.get(key(connection_id, "indexed", "runs")) is not None
    assert history.ensure_indexes(connection_id) == 0
    assert RunHistory(store, retention=DAY).ensure_indexes(connection_id) == 0  # the marker says so
    store.delete(key(connection_id, "indexed", "runs"))
    assert RunHistory(store, retention=DAY).ensure_indexes(connection_id) == 1200  # again: no change
    assert {k: store.zcard(k) for k in store.scan(key(connection_id, "runs-by"))} == before


def test_a_backup_carries_the_indexes(store: StateStore, connection_id: str, tmp_path: Path) -> None:
    history = RunHistory(store, retention=DAY)
    history.create_many([_run(connection_id, n, rule=f"r{n % 2}", status="dead", age=n) for n in range(10)])
    history.ensure_indexes(connection_id)
    export_state(store, tmp_path / "backup.gz", connections=[connection_id])
    other = SqliteStore(tmp_path / "restored.db")
    try:
        import_state(other, tmp_path / "backup.gz")
        assert set(other.scan(key(connection_id, "runs-by"))) == set(
            store.scan(key(connection_id, "runs-by"))
        )
        restored = RunHistory(other, retention=DAY)
        assert restored.ensure_indexes(connection_id) == 0  # carried, not rebuilt
        assert _ids(restored.page(connection_id, RunQuery(rule="r1", status="dead")).runs) == [
            f"run{n:06d}" for n in (1, 3, 5, 7, 9)
        ]
    finally:
        other.close()


def test_a_backup_from_before_the_indexes_gets_them_on_first_use(
    store: StateStore, connection_id: str, tmp_path: Path
) -> None:
    history = RunHistory(store, retention=DAY)
    history.create_many([_run(connection_id, n, rule=f"r{n % 2}", age=n) for n in range(10)])
    _legacy(store, history, connection_id)
    export_state(store, tmp_path / "old.gz", connections=[connection_id])
    other = SqliteStore(tmp_path / "restored.db")
    try:
        import_state(other, tmp_path / "old.gz")
        restored = RunHistory(other, retention=DAY)
        assert len(restored.page(connection_id, RunQuery(rule="r0")).runs) == 5
        assert other.get(key(connection_id, "indexed", "runs")) is not None
    finally:
        other.close()


def test_position_text_round_trips_and_refuses_junk() -> None:
    where = Position(1_775_000_000.123456, "abc_def")
    assert Position.parse(where.text()) == where
    for junk in ("", "nonsense", "1.5_", "nan_x", "inf_x"):
        with pytest.raises(ValueError):
            Position.parse(junk)
