"""Where does the worker's memory grow? The soak's load on ``ppw run``'s pieces, in this process.

The soak (:mod:`benchmarks.soak`) sees the resident memory of a ``ppw run`` child grow under load
but cannot say where. This runs the same pieces (:func:`benchmarks.pipeline.pipeline`: SQLite
state, the memory broker, the soak's post-every-change rules for its resources) in this process
against a sandbox churning in a child, and prints every ``--every`` seconds what only the process
itself can read:

- ``rss``: resident memory (``VmRSS``), and again after glibc's ``malloc_trim(0)`` (``--trim``),
  which hands freed heap pages back: what is left after it is held, not merely fragmented;
- ``sqlite``: SQLite's own count of its allocations (``sqlite3_memory_used``, through ctypes);
- ``traced``: Python's live allocations by tracemalloc (``--trace``; it slows the worker), and at
  the end the allocation sites that grew most since the first sample.

What it found (docs/benchmarks.md, "The 30-minute run"): Python's heap flat, SQLite's own count a
few MB, the growth outside both.

    python -m benchmarks.memory_probe [--minutes 4] [--churn 1000] [--trim] [--trace]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import threading
import time
import tracemalloc
from collections.abc import Callable

from benchmarks import pipeline
from benchmarks.soak import DEFAULT_CHURN, SOAK_RESOURCES, SOAK_RULE

WARMUP_SECONDS = 60.0


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _sqlite_memory_used() -> Callable[[], float]:
    """SQLite's ``sqlite3_memory_used()`` in MB, from the library Python's sqlite3 module loaded."""
    import _sqlite3

    used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    used.restype = ctypes.c_int64
    return lambda: used() / 1e6


def soak_rules() -> str:
    """The soak's post-every-change rules, escaped for :func:`pipeline.pipeline`'s ``format``."""
    rules = []
    for resource in SOAK_RESOURCES:
        text = SOAK_RULE.format(resource=resource, sink="SINK").replace("{", "{{").replace("}", "}}")
        rules.append(text.replace("SINK", "{sink}").replace("soak-every-change", f"soak-every-{resource}"))
    return "".join(rules)


def probe(minutes: float, churn: float, every: float, *, trim: bool, trace: bool) -> None:
    sqlite_mb = _sqlite_memory_used()
    libc = ctypes.CDLL("libc.so.6") if trim else None
    if trace:
        tracemalloc.start(12)
    with pipeline.pipeline(
        "memory",
        poll_interval=5,
        rules=soak_rules(),
        resources=SOAK_RESOURCES,
        sandbox_args=("--seed", "1", "--churn", f"{churn:g}"),
        prime_timeout=120,
    ):
        started = time.monotonic()
        time.sleep(WARMUP_SECONDS)  # the harness waits; the worker under test never sleeps on this
        gc.collect()
        first = tracemalloc.take_snapshot() if trace else None
        while time.monotonic() - started < minutes * 60:
            before = rss_mb()
            after = before
            if libc is not None:
                libc.malloc_trim(0)
                after = rss_mb()
            traced = f"{tracemalloc.get_traced_memory()[0] / 1e6:.1f}" if trace else "-"
            print(
                f"{(time.monotonic() - started) / 60:5.1f} min  rss {before:6.1f} MB"
                f"  after trim {after:6.1f} MB  sqlite {sqlite_mb():4.1f} MB  traced {traced} MB"
                f"  threads {threading.active_count()}",
                flush=True,
            )
            time.sleep(every)
        if first is not None:
            gc.collect()
            for stat in tracemalloc.take_snapshot().compare_to(first, "traceback")[:10]:
                print(f"{stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks")
                for line in stat.traceback.format()[-6:]:
                    print("   ", line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory_probe", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--churn", type=float, default=float(DEFAULT_CHURN), help="changes a minute")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) before each sample")
    parser.add_argument("--trace", action="store_true", help="tracemalloc (slows the worker)")
    args = parser.parse_args(argv)
    probe(args.minutes, args.churn, args.every, trim=args.trim, trace=args.trace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
