"""Hard data and hard edits: a bulk update, a rule file broken mid-run, a full disk under SQLite.

- A bulk update gives hundreds of matters one identical ``updated_at`` (more than a page of them):
  paging by timestamp alone would skip the rest; every one of them must fire once.
- The rule file is replaced by a broken one while ``ppw run`` runs: the error is reported with
  file:line:column, ``/readyz`` names the broken file, and the last good version keeps firing
  until the file is fixed, when the new version takes over.
- The disk under the embedded SQLite state fills up: polls fail cleanly, nothing advances,
  ``/readyz`` reports the polls failing; once space is freed everything made meanwhile fires once.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import CLOSED_MATTER_RULE, HOOK_PATH, Chaos
from tests.chaos.harness import eventually

BULK = 300


def test_bulk_update_with_one_timestamp(chaos_factory: Callable[..., Chaos], redis_url: str) -> None:
    chaos = chaos_factory(
        state_url=redis_url, broker_url=redis_url, PPW_FLOOD_LIMIT="1000", PPW_POLL_PAGE_SIZE="50"
    )
    created = chaos.admin.mutate(
        [
            {
                "op": "create",
                "resource": "matters",
                "data": {"name": f"Bulk {i}", "status": "Open"},
                "backdate_seconds": 3600,
            }
            for i in range(BULK)
        ]
    )
    chaos.process("run", PPW_WORKER_THREADS="8").start()
    eventually(chaos.primed, 30, "the first poll to prime matters")

    closed = chaos.admin.mutate(
        [
            {
                "op": "bulk_update",
                "resource": "matters",
                "ids": [m["id"] for m in created],
                "data": {"status": "Closed"},
            }
        ]
    )[0]
    assert len({m["updated_at"] for m in closed}) == 1, "one save, one timestamp"
    assert len(closed) > 5 * 50, "several pages share the timestamp"
    chaos.assert_invariants(closed, timeout=120)
    chaos.assert_still_live()


BROKEN = """\
- id: chaos-closed-matter
  trigger:
    resource: matters
    on: updated
     changed: status
"""


def test_rule_file_broken_mid_run(chaos_factory: Callable[..., Chaos], redis_url: str) -> None:
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url)
    worker = chaos.process("run").start()
    watch = chaos.watch(worker)
    eventually(chaos.primed, 20, "the first poll to prime matters")
    matters = chaos.open_matters(3)
    before = chaos.close(matters[:1])
    chaos.wait_done(before, timeout=30)

    rules_file = chaos.rules_dir / "rules.yaml"
    rules_file.write_text(BROKEN)
    sample = eventually(
        lambda: next(
            (s for s in reversed(watch.samples) if "1 broken: " in s.details.get("rules", "")), None
        ),
        20,
        "/readyz to name the broken rule file",
    )
    assert sample.status == 200, "a bad file does not take the worker out of service"
    assert "rules.yaml:5:" in sample.details["rules"], "readiness names where"
    located = re.search(r"rule error: \S*rules\.yaml:(\d+):(\d+): error", worker.log())
    assert located, "the error names file:line:column"
    assert located.group(1) == "5", "the line of the stray indentation"

    during = chaos.close(matters[1:2])  # the last good version still fires
    chaos.wait_done(during, timeout=30)

    chaos.write_rules(CLOSED_MATTER_RULE.replace('task: "{{{{ steps.task.id }}}}"', "version: 2"))
    eventually(
        lambda: any("broken" not in s.details.get("rules", "broken") for s in watch.samples[-3:]),
        20,
        "the fixed file to load",
    )
    after = chaos.close(matters[2:])
    chaos.assert_invariants(before + during + after)
    [delivery] = [r for r in chaos.stub.received(HOOK_PATH) if r.json["matter"] == after[0]["id"]]
    assert delivery.json.get("version") == 2, "the fixed version took over"
    assert all(r.json.get("version") is None for r in chaos.stub.received(HOOK_PATH) if r is not delivery)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (root can mount one); skipped where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    # unbuffered, and the suppress outermost: closing a buffered file on a full disk raises again
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 65536)
    return filler


def test_full_disk_under_sqlite_state(chaos_factory: Callable[..., Chaos], small_disk: Path) -> None:
    chaos = chaos_factory(state_url=f"sqlite:///{small_disk / 'state.db'}", broker_url="memory://")
    worker = chaos.process("run").start()
    watch = chaos.watch(worker)
    eventually(chaos.primed, 20, "the first poll to prime matters")
    matters = chaos.open_matters(4)
    first = chaos.close(matters[:2])
    chaos.wait_done(first, timeout=30)
    before = chaos.cursor()

    filler = _fill(small_disk)
    full_since = time.time()
    during = chaos.close(matters[2:])
    watch.wait_for("polls", timeout=20)
    assert chaos.cursor() == before, "a poll that cannot write advances nothing"
    assert not {m["id"] for m in during} & {r.event.record_id for r in chaos.runs()}, "nothing fired"
    assert "full" in worker.log().lower(), "the log says why"
    assert worker.alive()
    assert time.time() - full_since < 20

    filler.unlink()
    watch.wait_healthy(30)
    chaos.assert_invariants(first + during)
    chaos.assert_still_live()
