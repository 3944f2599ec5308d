"""Replaying dead-lettered runs: resume from the failed step, optionally with the current rule.

A replay puts the run back to ``queued`` and sends its message again. The ledger still holds every
step that finished, so the run resumes at the step that failed. By default it runs the rule
snapshot it was dispatched with (what the earlier steps were done under); ``--with-current-rule``
switches it to the rule as loaded now (the usual fix: correct the rule file, then replay). Steps
are matched by id across versions; a step the new rule no longer has is simply not run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from worker.delivery.app import DeliveryApp
from worker.delivery.history import Run
from worker.errors import PpwError

log = logging.getLogger(__name__)


class ReplayError(PpwError, RuntimeError):
    """The run cannot be replayed (not dead, or its rule is no longer loaded)."""


def replay(
    app: DeliveryApp,
    connection: str,
    run_id: str,
    send_run: Callable[[str, str], None],
    *,
    with_current_rule: bool = False,
) -> Run:
    """Requeue the dead run ``run_id`` (an unambiguous prefix works too); returns it as requeued."""
    run = app.history.resolve(connection, run_id)
    if run.status != "dead":
        raise ReplayError(f"run {run.id} is {run.status}, not dead; only dead-lettered runs are replayed")
    update: dict[str, object] = {
        "status": "queued",
        "attempts": 0,
        "error": None,
        "next_retry_at": None,
        "finished_at": None,
        "dead_at": None,
        "replays": run.replays + 1,
    }
    if with_current_rule:
        current = app.rules.current(run.rule_id)
        if current is None:
            raise ReplayError(
                f"rule {run.rule_id!r} is not loaded any more; replay without --with-current-rule"
            )
        update |= {
            "rule_version": current.version,
            "rule_snapshot": app.rules.snapshot(current),
            "mode": current.rule.mode,
            "steps": [],
        }
    queued = run.model_copy(update=update)
    app.history.save(queued)
    app.dead_letters.remove(connection, run.id)
    send_run(connection, run.id)
    log.info(
        "replaying run %s of rule %s (%s rule version %s)",
        run.id,
        run.rule_id,
        "current" if with_current_rule else "original",
        queued.rule_version,
    )
    return queued


def replay_all(
    app: DeliveryApp,
    connection: str,
    send_run: Callable[[str, str], None],
    *,
    with_current_rule: bool = False,
    rule: str | None = None,
) -> list[Run]:
    """Replay every dead run (of ``rule``), oldest first."""
    return [
        replay(app, connection, dead.id, send_run, with_current_rule=with_current_rule)
        for dead in app.dead_letters.entries(connection, rule=rule)
    ]
