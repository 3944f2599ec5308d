"""The variables a rule's templates see for one event.

``event``, ``record``, ``previous``, ``changes``, ``steps`` (results of earlier steps), ``env``
(only the names in ``PPW_ENV_ALLOWLIST``), ``rule`` and ``now()`` (the firm's local time).
Secrets are never in here: steps name them (``webhook: billing``) and the executors resolve them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from worker.events import Event
from worker.hints import did_you_mean
from worker.rules.views import ChangesView, NamedView, RecordView, resource_definition

Clock = Callable[[], dt.datetime]

#: Event resources of the non-record triggers: ``webhook:<hook name>`` and ``schedule:<rule id>``.
WEBHOOK_PREFIX = "webhook:"
SCHEDULE_PREFIX = "schedule:"


def webhook_resource(name: str) -> str:
    """The event resource of deliveries to the hook ``name``."""
    return WEBHOOK_PREFIX + name


def schedule_resource(rule_id: str) -> str:
    """The event resource of the slots of the schedule rule ``rule_id``."""
    return SCHEDULE_PREFIX + rule_id


EVENT_FIELDS = ("id", "type", "resource", "record_id", "revision", "origin", "connection", "detected_at")
RULE_FIELDS = ("id", "description", "version")


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def allowed_env(allowlist: list[str], secrets: list[str]) -> dict[str, str]:
    """The allow-listed environment variables that are set, minus any that hold a secret."""
    hidden = set(secrets)
    return {
        name: os.environ[name] for name in allowlist if name in os.environ and os.environ[name] not in hidden
    }


def event_view(event: Event) -> NamedView:
    values = {
        "id": event.id,
        "type": event.type,
        "resource": event.resource,
        "record_id": event.record_id,
        "revision": event.revision,
        "origin": event.origin,
        "connection": event.connection,
        "detected_at": event.detected_at.isoformat(),
    }
    return NamedView(values, "event field", lambda name: did_you_mean(name, EVENT_FIELDS))


def env_view(values: Mapping[str, str], allowlist: list[str]) -> NamedView:
    def explain(name: str) -> str:
        if name in allowlist:
            return f"{name} is allow-listed but not set in the environment"
        near = did_you_mean(name, allowlist)
        return near or f"add {name} to PPW_ENV_ALLOWLIST to use it in templates"

    return NamedView(dict(values), "allow-listed environment variable", explain)


def steps_view(results: Mapping[str, Any], later: list[str] | None = None) -> NamedView:
    def explain(name: str) -> str:
        if later and name in later:
            return f"step {name!r} runs after this one"
        known = list(results)
        return did_you_mean(name, known) or (
            f"earlier steps with an id: {', '.join(known)}" if known else "no earlier step has an id"
        )

    return NamedView(dict(results), "earlier step with id", explain)


def rule_view(rule_id: str, description: str, version: str) -> NamedView:
    values = {"id": rule_id, "description": description, "version": version}
    return NamedView(values, "rule field", lambda name: did_you_mean(name, RULE_FIELDS))


def payload_view(value: Any, path: str = "payload") -> Any:
    """A webhook body as templates see it: mappings whose missing keys are errors naming the keys
    that are there (``payload.nmae`` -> did you mean 'name'?), lists of the same."""
    if isinstance(value, Mapping):
        items = {str(k): payload_view(v, f"{path}.{k}") for k, v in value.items()}

        def explain(name: str) -> str:
            return did_you_mean(name, list(items)) or (
                f"{path} has {', '.join(sorted(items))}" if items else f"{path} is empty"
            )

        return NamedView(items, f"field of {path}", explain)
    if isinstance(value, list):
        return [payload_view(item, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def results_view(event: Event) -> list[RecordView]:
    """A schedule slot's query results as records of the query's resource."""
    resource = event.record.get("resource")
    definition = resource_definition(resource if isinstance(resource, str) else None)
    label = str(resource or "record")
    return [RecordView(item, definition, label) for item in event.record.get("results") or []]


def slot_time(event: Event) -> dt.datetime | None:
    """A schedule slot's time, in the schedule's time zone."""
    raw = event.record.get("slot")
    if not isinstance(raw, str):
        return None
    moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    zone = event.record.get("timezone")
    return moment.astimezone(ZoneInfo(zone)) if isinstance(zone, str) and zone else moment


def build(
    event: Event,
    *,
    resource: str | None,
    env: NamedView,
    zone: dt.tzinfo,
    clock: Clock = system_clock,
) -> dict[str, Any]:
    """The variables shared by every rule evaluated for ``event`` (``rule`` and ``steps`` are added
    per rule)."""

    def now() -> dt.datetime:
        return clock().astimezone(zone)

    variables: dict[str, Any] = {
        "event": event_view(event),
        "env": env,
        "now": now,
        "steps": steps_view({}),
        "payload": None,
        "results": [],
        "slot": None,
    }
    if event.type == "webhook":
        # a delivery has a body, not a record
        variables.update(record=None, previous=None, changes=ChangesView.of({}, None))
        variables["payload"] = payload_view(event.record.get("payload"))
    elif event.type == "schedule":
        variables.update(record=None, previous=None, changes=ChangesView.of({}, None))
        variables["results"] = results_view(event)
        variables["slot"] = slot_time(event)
    else:
        variables.update(
            record=RecordView.of(event.record, resource),
            previous=RecordView.of(event.previous, resource),
            changes=ChangesView.of(event.changes, resource, (event.record, event.previous)),
        )
    return variables
