"""Triggers that are not record changes: inbound webhooks and schedules.

* :class:`WebhookIntake` -- ``POST /hooks/<name>`` turns an authenticated delivery into an event.
* :class:`ScheduleRunner` -- fires each slot of each schedule rule once, from the leader scheduler.
* :func:`webhook_routes_for`, :func:`start_schedules` -- the one-line hooks processes call.
"""

from __future__ import annotations

from worker.triggers.events import schedule_event, webhook_event
from worker.triggers.options import TriggerOptions
from worker.triggers.schedules import ScheduleRunner, build_slot_event
from worker.triggers.service import start_schedules, webhook_intake, webhook_routes_for
from worker.triggers.webhooks import WebhookIntake

__all__ = [
    "ScheduleRunner",
    "TriggerOptions",
    "WebhookIntake",
    "build_slot_event",
    "schedule_event",
    "start_schedules",
    "webhook_event",
    "webhook_intake",
    "webhook_routes_for",
]
