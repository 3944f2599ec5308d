"""Figures, the targets they are judged by, and the report (JSON file and table) they end up in.

Every figure is measured beside the baseline it is compared to, in the same run on the same
machine: a throughput next to the raw Dramatiq ceiling, a latency next to the poll interval. A
number without its baseline says little about the code and much about the machine it ran on.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Comparison = Literal[">=", "<=", "=="]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Target:
    """What a figure must reach: ``value >= 0.5``, ``p99 <= 6.0`` ..."""

    op: Comparison
    value: float

    def met_by(self, value: float) -> bool:
        if self.op == ">=":
            return value >= self.value
        if self.op == "<=":
            return value <= self.value
        return abs(value - self.value) < 1e-9

    def __str__(self) -> str:
        return f"{self.op} {_number(self.value)}"


@dataclass(frozen=True)
class Figure:
    """One measured number, with the baseline measured beside it and the target it is judged by.

    Parameters
    ----------
    name:
        What was measured, short (``events/s on redis``).
    value, unit:
        The measurement.
    baseline, baseline_name, baseline_unit:
        The same-run reference it is compared to (``engine ceiling``), if any; its unit defaults
        to the figure's.
    target:
        Applied to ``value``, or to ``value / baseline`` when ``target_on_ratio``.
    """

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    target: Target | None = None
    target_on_ratio: bool = False
    note: str = ""
    baseline_unit: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        assert self.baseline is not None
        return self.value / self.baseline

    @property
    def judged(self) -> float | None:
        return self.ratio if self.target_on_ratio else self.value

    @property
    def meets_target(self) -> bool | None:
        judged = self.judged
        if self.target is None or judged is None:
            return None
        return self.target.met_by(judged)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        data["meets_target"] = self.meets_target
        return data


@dataclass
class Section:
    """The outcome of one benchmark: its figures, free-form details, or why it did not run."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "skipped": self.skipped,
            "figures": [f.to_dict() for f in self.figures],
            "details": self.details,
        }


def machine() -> dict[str, Any]:
    """Enough about the machine and the checkout to compare two reports fairly."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        import psutil

        info["memory_mb"] = round(psutil.virtual_memory().total / 2**20)
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except ImportError:  # pragma: no cover - psutil is a bench dependency
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        )
        info["commit"] = commit.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def build(sections: Iterable[Section], *, quick: bool, started: datetime) -> dict[str, Any]:
    listed = list(sections)
    figures = [f for s in listed for f in s.figures]
    judged = [f for f in figures if f.meets_target is not None]
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "summary": {
            "figures": len(figures),
            "with_target": len(judged),
            "meeting_target": sum(1 for f in judged if f.meets_target),
            "missed": [f"{s.name}: {f.name}" for s in listed for f in s.figures if f.meets_target is False],
            "failed_benchmarks": [s.name for s in listed if s.error],
        },
        "benchmarks": {s.name: s.to_dict() for s in listed},
    }


def write(report: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """``<directory>/<timestamp>.json`` and ``latest.json``; returns the timestamped path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, indent=2, default=str) + "\n"
    path = directory / f"{stamp}.json"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01:
        return f"{value:.3g}" if magnitude < 1 else f"{value:.2f}"
    return f"{value:.2e}"


def table(report: dict[str, Any]) -> str:
    """The report as a plain-text table: each figure beside its baseline, ratio and target."""
    header = ("benchmark", "figure", "value", "baseline (same run)", "ratio", "target", "ok")
    rows: list[tuple[str, ...]] = []
    for name, section in report["benchmarks"].items():
        if section["error"] or section["skipped"]:
            reason = section["error"] or section["skipped"]
            label = "ERROR" if section["error"] else "skipped"
            rows.append((name, f"{label}: {reason}"[:90], "", "", "", "", ""))
            continue
        for figure in section["figures"]:
            baseline = (
                f"{_number(figure['baseline'])} {figure['baseline_unit'] or figure['unit']} "
                f"({figure['baseline_name']})"
                if figure["baseline"] is not None
                else "-"
            )
            target = figure["target"] or "-"
            if figure["target"] and figure["target_on_ratio"]:
                target = f"ratio {target}"
            ok = {True: "yes", False: "NO", None: ""}[figure["meets_target"]]
            rows.append(
                (
                    name,
                    figure["name"],
                    f"{_number(figure['value'])} {figure['unit']}",
                    baseline,
                    _number(figure["ratio"]),
                    target,
                    ok,
                )
            )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    out = [line(header), line(tuple("-" * w for w in widths))]
    previous = ""
    for row in rows:
        shown = row if row[0] != previous else ("", *row[1:])
        previous = row[0]
        out.append(line(shown))
    summary = report["summary"]
    out.append("")
    out.append(
        f"{summary['meeting_target']} of {summary['with_target']} targets met"
        + (f"; missed: {', '.join(summary['missed'])}" if summary["missed"] else "")
        + (f"; failed: {', '.join(summary['failed_benchmarks'])}" if summary["failed_benchmarks"] else "")
    )
    return "\n".join(out)
