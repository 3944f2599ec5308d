"""SIGKILL a process in the middle of its SQLite writes: no batch that had returned is lost.

The embedded worker's promise for its step ledger: once ``batch()`` returns, the write is on disk
(WAL, ``synchronous=FULL``), whatever happens to the process next. A child process writes batches
from several threads as fast as it can and reports each one on stdout only after ``batch()`` has
returned; the test kills it with SIGKILL while writes are in flight, then opens the file anew and
finds every reported batch, each whole, and no batch half applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from worker.state.sqlite import SqliteStore

WRITER = textwrap.dedent(
    """
    import sys, threading
    from worker.state.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    out = threading.Lock()

    def write(thread):
        n = 0
        while True:
            name = f"{thread}-{n}"
            with store.batch() as b:
                b.set(f"ppw:c:run:{name}", "record " + "x" * 1500)
                b.hset("ppw:c:ledger", {name: "started"})
                b.zadd("ppw:c:index", {name: float(n)})
            with out:
                sys.stdout.write(name + "\\n")
                sys.stdout.flush()
            n += 1

    for i in range(4):
        threading.Thread(target=write, args=(i,), daemon=True).start()
    threading.Event().wait()
    """
)


def test_sigkill_loses_no_batch_that_had_returned(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert child.stdout is not None
    returned: list[str] = []
    try:
        while len(returned) < 300:
            line = child.stdout.readline()
            assert line, f"the writer ended early (exit {child.poll()})"
            returned.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    returned += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    store = SqliteStore(path)  # a fresh process's view: WAL recovery, as after a restart
    try:
        ledger = store.hgetall("ppw:c:ledger")
        index = dict(store.zrange_by_score("ppw:c:index"))
        runs = {k.removeprefix("ppw:c:run:") for k in store.scan("ppw:c:run:")}
    finally:
        store.close()
    missing = [name for name in returned if name not in ledger]
    assert missing == [], f"{len(missing)} batches had returned and were lost: {missing[:5]}"
    assert set(ledger) == set(index) == runs, "a batch was half applied"
