"""Run history as text for people: the tables of ``ppw runs list`` / ``ppw dlq list`` and the
detail of ``ppw runs show``. JSON output uses the models directly."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from worker.delivery.history import Run, StepTrace

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, *, now: float | None = None) -> float:
    """``30m``, ``2h``, ``7d`` ago, or an ISO date/time (UTC unless it says otherwise), as Unix time."""
    match = _DURATION.match(text)
    if match:
        return (time.time() if now is None else now) - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return parse_moment(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: use a duration such as 30m, 2h, 7d or a date such as 2026-04-01"
        ) from None


def parse_moment(text: str) -> float:
    """An ISO date or date and time as Unix time, UTC unless it names its offset (as ppw shows
    times); ``ValueError`` when it is not one."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _clip(text: str | None, width: int) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _progress(run: Run) -> str:
    finished = sum(1 for s in run.steps if s.status in ("done", "skipped", "errored"))
    return f"{finished}/{len(run.steps)}" if run.steps else "-"


def _note(run: Run) -> str | None:
    if run.status == "waiting" and run.wake_at is not None:
        # the version first: a long step id is what the column clips
        return f"wakes {_when(run.wake_at)} (rule version {run.rule_version[:8]}, step {run.waiting_step})"
    return run.error or run.reason


def runs_table(runs: Sequence[Run], *, error_width: int = 60) -> str:
    """One line per run, newest first as given."""
    if not runs:
        return "no runs"
    header = ("RUN", "CREATED", "RULE", "STATUS", "EVENT", "STEPS", "TRIES", "ERROR / REASON")
    rows = [
        (
            run.id[:12],
            _when(run.created_at),
            run.rule_id,
            run.status,
            f"{run.event.type} {run.event.resource} {run.event.record_id}",
            _progress(run),
            str(run.attempts),
            _clip(_note(run), error_width),
        )
        for run in runs
    ]
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in (header, *rows)
    ]
    return "\n".join(lines)


def _json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _step_lines(index: int, step: StepTrace) -> list[str]:
    took = f" in {step.duration_ms:.0f} ms" if step.duration_ms is not None else ""
    reused = " (result reused from an earlier attempt)" if step.reused else ""
    lines = [f"  {index}. {step.id} [{step.type}] {step.status}{took}{reused}"]
    if step.condition is not None:
        lines.append(f"     if: {'true' if step.condition else 'false'}")
    if step.attempts > 1:
        lines.append(f"     attempts: {step.attempts}")
    if step.error:
        lines.append(f"     error: {step.error}")
    for label, value in (("request", step.request), ("response", step.response)):
        if value:
            body = _json(value).replace("\n", "\n       ")
            lines.append(f"     {label}: {body}")
    return lines


def run_detail(run: Run) -> str:
    """Everything about one run, secrets already masked when it was recorded."""
    lines = [
        f"run       {run.id}",
        f"status    {run.status}" + (f" ({run.reason})" if run.reason else ""),
        f"rule      {run.rule_id} (version {run.rule_version}, mode {run.mode})"
        + (" [dry run]" if run.dry_run else ""),
        f"event     {run.event_id}: {run.event.type} {run.event.resource} {run.event.record_id} "
        f"(revision {run.event.revision}, origin {run.event.origin})",
        *([f"changes   {run.event.changes_text()}"] if run.event.changed else []),
        f"created   {_when(run.created_at)}",
        f"started   {_when(run.started_at)}",
        f"finished  {_when(run.finished_at)}"
        + (f" after {run.duration_ms:.0f} ms" if run.duration_ms is not None else ""),
        f"attempts  {run.attempts}" + (f", replayed {run.replays}x" if run.replays else ""),
    ]
    if run.next_retry_at:
        lines.append(f"next try  {_when(run.next_retry_at)}")
    if run.error:
        lines.append(f"error     {run.error}" + (f" (step {run.failed_step})" if run.failed_step else ""))
    if run.conditions is not None:
        lines.append("conditions " + _json(run.conditions).replace("\n", "\n           "))
    lines.append("steps")
    for index, step in enumerate(run.steps, start=1):
        lines.extend(_step_lines(index, step))
    if not run.steps:
        lines.append("  (not started)")
    return "\n".join(lines)
