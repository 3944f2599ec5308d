"""``python -m benchmarks`` (``make bench``): run every benchmark, write the report, print the table.

    python -m benchmarks                    # full run (several minutes)
    BENCH_QUICK=1 python -m benchmarks      # smaller sizes, for CI or a quick look
    python -m benchmarks --only engine_ceiling,priming
    python -m benchmarks --list

The report goes to ``benchmarks/results/<timestamp>.json`` and ``benchmarks/results/latest.json``.
Exit status 0 even when a target is missed (the report says which); 1 when a benchmark failed
to run at all, or with ``--strict`` when any target is missed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import report, suite


def _quick_from_env() -> bool:
    return os.environ.get("BENCH_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=_quick_from_env(), help="smaller sizes")
    parser.add_argument("--only", help="comma-separated benchmark names (see --list)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--results", type=Path, default=report.RESULTS_DIR, help="report directory")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    if args.list:
        for name, (title, _fn) in suite.BENCHMARKS.items():
            print(f"{name:<18} {title}")
        return 0
    names = list(suite.BENCHMARKS)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in suite.BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)}; see --list")
        names = [n for n in names if n in wanted]

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = datetime.now(UTC)
    sections = suite.run(names, quick=args.quick, progress=lambda text: print(text, file=sys.stderr))
    built = report.build(sections, quick=args.quick, started=started)
    path = report.write(built, args.results)
    print(report.table(built))
    print(f"\nreport: {path} (and {path.parent / 'latest.json'})")
    if built["summary"]["failed_benchmarks"]:
        return 1
    if args.strict and built["summary"]["missed"]:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
