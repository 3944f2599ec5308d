"""Whether a rule's trigger holds for an event: one evaluation, for firing and for explaining.

:func:`check_trigger` tests the parts of a trigger in order and returns a :class:`TriggerVerdict`
(held or not, and a :class:`~worker.rules.results.Check` per part tested). Firing
(:meth:`~worker.rules.engine.Engine.match`) asks for the verdict only, which stops at the first
part that fails; explaining (:meth:`~worker.rules.engine.Engine.evaluate`, so ``ppw rules test``
and ``ppw rules explain``) asks for every part with the values involved. Both read the same
parts, so what fires and what the explanation says cannot disagree. Pure: no I/O, no clock.

The parts, in order:

* ``enabled``: the rule is not ``enabled: false``;
* a webhook trigger: ``webhook``, the event is a delivery to that hook (nothing else is tested);
* a schedule trigger: ``schedule``, the event is a slot of this rule's schedule (nothing else);
* a record trigger: ``resource``, the event is for the watched resource; ``event type``, the
  event's type is one the rule lists under ``on``;
* ``own change``, tested only for changes ppw made itself: the rule has ``allow_own_changes``;
* ``changed``, when the rule lists fields: one of them changed (``created``: it has a non-empty
  value; ``deleted``: it had one; ``updated``: it is among the event's changes);
* ``from``/``to``, when given: the first ``changed`` field's old/new value matches (``created``
  has no old value and ``deleted`` no new one); a list matches any of its values, and a
  reference (a dict) matches its ``id``, ``display_name`` or ``name``, and a date or datetime
  matches the timestamp text it stands for (``to: 2026-05-01``).

A field named ``custom.<label>`` is the custom field of that label (:mod:`worker.practicepanther.
customfields`): the event's ``changes`` name it so, and created/deleted records are read through
their custom field values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from worker.events import Event
from worker.practicepanther import customfields
from worker.practicepanther.odata import parse_timestamp
from worker.rules import context as ctx
from worker.rules.model import RecordTrigger, Rule, ScheduleTrigger, WebhookTrigger
from worker.rules.results import Check


@dataclass(frozen=True)
class TriggerVerdict:
    """Whether the trigger ``held``, and the parts tested: every one when explained, else up to
    the first that failed (none when it held)."""

    held: bool
    checks: tuple[Check, ...] = ()

    @property
    def failed(self) -> Check | None:
        """The first part that did not hold."""
        return next((check for check in self.checks if not check.passed), None)


#: The verdicts of firing (no details): held, or failed at one part. Shared, as they never vary.
_HELD = TriggerVerdict(True)
_FAILED = {
    name: TriggerVerdict(False, (Check(name, False),))
    for name in (
        "enabled",
        "webhook",
        "schedule",
        "resource",
        "event type",
        "own change",
        "changed",
        "from",
        "to",
        "due",
    )
}


def check_trigger(rule: Rule, event: Event, *, explain: bool = True, indexed: bool = False) -> TriggerVerdict:
    """The verdict of ``rule``'s trigger on ``event``. With ``explain`` every part is tested and
    listed with its details; without, the first part that fails decides (and is the only one
    listed, without details). Firing calls this for every candidate rule of every event, so the
    parts are tested inline, and details are only built to explain.

    ``indexed`` (firing only): the rule came from :class:`~worker.rules.matching.RuleIndex` under
    the event's resource and type, which lists enabled rules only, so ``enabled``, ``webhook``,
    ``schedule``, ``resource`` and ``event type`` are known to hold and are not tested again.
    """
    checks: list[Check] = []
    trigger = rule.trigger
    if indexed and not explain:
        if isinstance(trigger, RecordTrigger):
            return _record_parts(rule, trigger, event, checks, explain)
        return _HELD

    ok = rule.enabled
    if not explain and not ok:
        return _FAILED["enabled"]
    if explain:
        checks.append(Check("enabled", ok, "" if ok else "the rule has enabled: false"))

    if isinstance(trigger, WebhookTrigger):
        wanted = ctx.webhook_resource(trigger.webhook)
        ok = event.type == "webhook" and event.resource == wanted
        if not explain:
            return _HELD if ok else _FAILED["webhook"]
        detail = (
            f"a delivery to /hooks/{trigger.webhook}"
            if event.resource == wanted
            else f"rule listens on /hooks/{trigger.webhook}; event is {event.type} {event.resource}"
        )
        return _explained(checks, Check("webhook", ok, detail))

    if isinstance(trigger, ScheduleTrigger):
        wanted = ctx.schedule_resource(rule.id)
        ok = event.type == "schedule" and event.resource == wanted
        if not explain:
            return _HELD if ok else _FAILED["schedule"]
        detail = (
            f"slot {event.record.get('slot')}"
            if event.resource == wanted
            else "runs on its schedule, not on record changes"
        )
        return _explained(checks, Check("schedule", ok, detail))

    ok = event.resource == trigger.resource
    if not explain and not ok:
        return _FAILED["resource"]
    if explain:
        checks.append(
            Check("resource", ok, f"event is for {event.resource}, rule watches {trigger.resource}")
        )

    if trigger.timed or event.type == "due":
        return _due_parts(rule, trigger, event, checks, explain)

    ok = event.type in trigger.on
    if not explain and not ok:
        return _FAILED["event type"]
    if explain:
        checks.append(
            Check("event type", ok, f"event is {event.type!r}; rule fires on {', '.join(trigger.on)}")
        )

    return _record_parts(rule, trigger, event, checks, explain)


def _record_parts(
    rule: Rule, trigger: RecordTrigger, event: Event, checks: list[Check], explain: bool
) -> TriggerVerdict:
    """The parts of a record trigger after its resource and event type: own change, changed,
    from and to; for a ``due`` event, that it is this rule's moment (and, for ``for:``, that the
    field still holds the value)."""
    if event.type == "due" or trigger.timed:
        return _due_parts(rule, trigger, event, checks, explain)
    if event.origin == "ppw":
        ok = rule.allow_own_changes
        if not explain and not ok:
            return _FAILED["own change"]
        if explain:
            detail = "the change was made by ppw itself (set allow_own_changes: true to fire on it)"
            checks.append(Check("own change", ok, detail))

    if trigger.changed:
        changed = _changed_fields(event, trigger.changed)
        ok = bool(changed)
        if not explain and not ok:
            return _FAILED["changed"]
        if explain:
            checks.append(Check("changed", ok, _changed_detail(event, trigger.changed, changed)))
        if trigger.has_from or trigger.has_to:
            name = trigger.changed[0]
            old, new = transition(event, name)
            moments = name.startswith(customfields.PREFIX)  # a custom date is text: compare instants
            if trigger.has_from:
                ok = value_matches(old, trigger.from_, moments=moments)
                if not explain and not ok:
                    return _FAILED["from"]
                if explain:
                    checks.append(Check("from", ok, f"{name} was {old!r}, rule wants {trigger.from_!r}"))
            if trigger.has_to:
                ok = value_matches(new, trigger.to, moments=moments)
                if not explain and not ok:
                    return _FAILED["to"]
                if explain:
                    checks.append(Check("to", ok, f"{name} is {new!r}, rule wants {trigger.to!r}"))

    return _explained(checks) if explain else _HELD


def _due_parts(
    rule: Rule, trigger: RecordTrigger, event: Event, checks: list[Check], explain: bool
) -> TriggerVerdict:
    ok = event.type == "due" and event.rule == rule.id and trigger.timed
    if not explain and not ok:
        return _FAILED["due"]
    if explain:
        detail = (
            "this rule's moment came"
            if ok
            else "a date or 'for' trigger fires when its moment comes (a due event), not on the change"
            if trigger.timed
            else "a due event is for a date or 'for' trigger"
        )
        checks.append(Check("due", ok, detail))
    if ok and trigger.for_ is not None:
        name = trigger.changed[0]
        now = field_value(event.resource, event.record, name)
        held = value_matches(now, trigger.to, moments=name.startswith(customfields.PREFIX))
        if not explain and not held:
            return _FAILED["to"]
        if explain:
            checks.append(
                Check("to", held, f"{name} is {now!r}, rule wants it to have stayed {trigger.to!r}")
            )
    return _explained(checks) if explain else _HELD


def _explained(checks: list[Check], *last: Check) -> TriggerVerdict:
    parts = (*checks, *last)
    return TriggerVerdict(all(check.passed for check in parts), parts)


def _changed_fields(event: Event, names: list[str]) -> list[str]:
    """Those of ``names`` that changed with ``event`` (:func:`changed_in`, inlined for updates)."""
    if event.type == "updated":
        changes = event.changes
        return [name for name in names if name in changes]
    return [name for name in names if changed_in(event, name)]


def _changed_detail(event: Event, wanted: list[str], changed: list[str]) -> str:
    if changed:
        return f"{', '.join(changed)} changed"
    return f"{' or '.join(wanted)} did not change" + (
        f" (changed: {', '.join(sorted(event.changes)) or 'nothing'})" if event.type == "updated" else ""
    )


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def field_value(resource: str, record: dict[str, Any] | None, name: str) -> Any:
    """Field ``name`` of ``record``; ``custom.<label>`` is that custom field's raw value."""
    if record is None:
        return None
    label = customfields.custom_label(name)
    if label is None:
        return record.get(name)
    found = customfields.values_by_label(resource, record).get(label)
    return found[1] if found is not None else None


def changed_in(event: Event, name: str) -> bool:
    """Whether field ``name`` changed with ``event`` (see the module docstring)."""
    if event.type == "created":
        return not _empty(field_value(event.resource, event.record, name))
    if event.type == "deleted":
        return not _empty(field_value(event.resource, event.previous or event.record, name))
    return name in event.changes


def transition(event: Event, name: str) -> tuple[Any, Any]:
    """The old and new value of field ``name`` with ``event``."""
    resource = event.resource
    if event.type == "created":
        return None, field_value(resource, event.record, name)
    if event.type == "deleted":
        return field_value(resource, event.previous or event.record, name), None
    change = event.changes.get(name)
    if change is not None:
        return change.old, change.new
    return field_value(resource, event.previous or {}, name), field_value(resource, event.record, name)


def value_matches(actual: Any, expected: Any, *, moments: bool = False) -> bool:
    """Equality, where ``expected`` may list alternatives and a reference matches its id or name.

    With ``moments`` (a custom field, whose dates are timestamp text), a timestamp also matches
    the date (``2027-03-01``: the same UTC day) or the instant written in another form.
    """
    if isinstance(expected, list):
        return any(value_matches(actual, option, moments=moments) for option in expected)
    if isinstance(actual, dict) and not isinstance(expected, dict):
        return expected in (actual.get("id"), actual.get("display_name"), actual.get("name"))
    if actual == expected:
        return True
    if isinstance(actual, str) and (isinstance(expected, date) or (moments and isinstance(expected, str))):
        return _same_moment(actual, expected)
    return False


def _same_moment(text: str, expected: date | str) -> bool:
    """A timestamp text against a date (the same UTC day) or a datetime (the same instant)."""
    try:
        moment = parse_timestamp(text)
        wanted: date | None = parse_timestamp(expected) if isinstance(expected, str) else expected
    except (ValueError, TypeError):
        return False
    if moment is None or wanted is None:
        return False
    if isinstance(expected, str) and len(expected.strip()) == 10 and isinstance(wanted, datetime):
        wanted = wanted.date()  # a bare date names a day, not its midnight
    if isinstance(wanted, datetime):
        return moment == (wanted if wanted.tzinfo is not None else wanted.replace(tzinfo=UTC))
    return moment.astimezone(UTC).date() == wanted
