"""Triggers that are not record changes: inbound webhooks and schedules.

* :class:`WebhookIntake` -- ``POST /hooks/<name>`` turns an authenticated delivery into an event.
* :class:`ApprovalDesk` -- ``POST /slack/interactivity`` and ``/approvals/<token>``: the decisions
  of ``approval`` steps (Slack clicks, one-time links), which wake the waiting runs.
* :class:`ScheduleRunner` -- fires each slot of each schedule rule once, from the leader scheduler.

Wiring them into a process (``webhook_routes_for``, ``start_schedules``) is process assembly: see
:mod:`worker.process.triggers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.exports import lazy_exports
from worker.triggers.events import schedule_event, webhook_event
from worker.triggers.options import TriggerOptions
from worker.triggers.schedules import ScheduleRunner, build_slot_event
from worker.triggers.webhooks import WebhookIntake

# Resolved on first use: the previews (``ppw rules test``) need jsonschema, the triggers do not.
_LAZY = {
    "parse_at": "worker.triggers.preview",
    "ApprovalDesk": "worker.triggers.approvals",
    "payload_preview": "worker.triggers.preview",
    "slot_preview": "worker.triggers.preview",
}

__all__ = [
    "ApprovalDesk",
    "ScheduleRunner",
    "TriggerOptions",
    "WebhookIntake",
    "build_slot_event",
    "parse_at",
    "payload_preview",
    "schedule_event",
    "slot_preview",
    "webhook_event",
]

if TYPE_CHECKING:
    from worker.triggers.approvals import ApprovalDesk
    from worker.triggers.preview import parse_at, payload_preview, slot_preview


__getattr__ = lazy_exports(__name__, _LAZY)
