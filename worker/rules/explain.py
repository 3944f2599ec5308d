"""Why a rule would or would not fire for a record: the logic behind ``ppw rules explain``.

Given the live record and the snapshot the poller last stored, this builds the event the poller
would detect next (``created`` with no snapshot, ``updated`` with the fields that differ, ``deleted``
when the record is gone) and evaluates every rule against it.

It also computes the moments time gives a rule for a record (:func:`moments`; ``ppw rules explain``
and ``ppw rules test``): when a date trigger would fire (the date field, plus the offset in
business days, at the time of day in the firm zone), when a ``for:`` duration would end (counted
from the record's ``updated_at``), and when a ``wait`` step would wake. Delivery sets its alarms
with the same functions (:func:`date_moment`, :func:`for_end`), so what is shown is what runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from worker.calendar import Calendar, CalendarError, parse_duration, parse_time_of_day
from worker.events import Change, Event, EventType, Origin
from worker.practicepanther import customfields, resources
from worker.practicepanther.client import PracticePantherClient
from worker.practicepanther.errors import NotFound
from worker.rules.engine import Engine, Evaluation
from worker.rules.model import RecordTrigger, Rule
from worker.rules.results import StepPreview
from worker.rules.triggers import field_value, value_matches
from worker.settings import Settings
from worker.state import open_store
from worker.state.base import StateStore

#: Fields that change on every save and say nothing about what changed.
_NOISE = frozenset({"updated_at"})


def diff(previous: dict[str, Any], record: dict[str, Any], resource: str | None = None) -> dict[str, Change]:
    """Fields whose value differs between two versions of a record (``updated_at`` ignored).

    With ``resource``, each custom field whose value differs is a change of its own,
    ``custom.<label>`` (:func:`~worker.practicepanther.customfields.expand_changes`, as the
    poller names them), besides the change of the whole list.
    """
    changes: dict[str, Change] = {}
    for name in sorted(set(previous) | set(record)):
        if name in _NOISE:
            continue
        old, new = previous.get(name), record.get(name)
        if old != new:
            changes[name] = Change(old=old, new=new)
    if resource is not None:
        changes.update(_custom_changes(resource, previous, record))
    return changes


def _custom_changes(
    resource: str, previous: dict[str, Any] | None, record: dict[str, Any]
) -> dict[str, Change]:
    expanded = customfields.expand_changes(resource, previous, record)
    return {name: Change(old=old, new=new) for name, (old, new) in expanded.items()}


def revision_of(record: dict[str, Any]) -> str:
    """``updated_at`` where the record has one, else a hash of its content (as the poller does)."""
    updated = record.get("updated_at")
    if isinstance(updated, str) and updated:
        return updated
    canonical = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def synthesize_event(
    resource: str,
    record: dict[str, Any] | None,
    previous: dict[str, Any] | None = None,
    *,
    type: EventType | None = None,
    origin: str = "practicepanther",
    connection: str = "default",
) -> Event:
    """The event a poll would produce for this record and snapshot (``type`` forces one)."""
    if record is None and previous is None:
        raise ValueError("need the record, its previous version, or both")
    if type is None:
        type = "deleted" if record is None else ("updated" if previous is not None else "created")
    current = record if record is not None else dict(previous or {})
    changes: dict[str, Change] = {}
    if type == "updated" and previous is not None:
        changes = diff(previous, current, resource)
    elif type == "created":
        changes = {k: Change(old=None, new=v) for k, v in current.items() if v not in (None, "", [], {})}
        changes.update(_custom_changes(resource, None, current))
    record_id = str(current.get("id") or (previous or {}).get("id") or "unknown")
    return Event.build(
        type=type,
        resource=resource,
        record_id=record_id,
        revision=revision_of(current),
        connection=connection,
        record=current,
        previous=previous,
        changes=changes,
        origin=cast(Origin, origin),
    )


# -- moments ---------------------------------------------------------------------------------------


def date_moment(
    trigger: RecordTrigger, record: dict[str, Any] | None, calendar: Calendar
) -> tuple[dt.datetime, dt.datetime] | None:
    """When an ``at:`` trigger fires for ``record``, and the date it is for (as an instant); None
    when the field is empty. Raises ``ValueError`` (or ``TypeError``) when it is not a date."""
    assert trigger.at is not None
    value = field_value(trigger.resource, record, trigger.at)
    if value in (None, ""):
        return None
    date = calendar.moment(value)
    moment = date
    if trigger.offset:
        moment = parse_duration(trigger.offset).apply(moment, calendar)
    if trigger.time:
        moment = calendar.at(moment, parse_time_of_day(trigger.time))
    return moment, date


def for_end(trigger: RecordTrigger, since: dt.datetime, calendar: Calendar) -> dt.datetime:
    """When a ``for:`` duration that started at ``since`` ends (in the firm calendar)."""
    assert trigger.for_ is not None
    return parse_duration(trigger.for_).apply(since.astimezone(calendar.zone), calendar)


def value_since(record: dict[str, Any] | None) -> dt.datetime | None:
    """The best moment ppw has for when a record's current values were set: its ``updated_at``.

    It is an upper bound (the value may have been set earlier, and the record saved since), so a
    duration counted from it never ends early."""
    try:  # lazy: the polling package is optional for the rules library
        from worker.polling.snapshots import parse_revision
    except ImportError:
        return None
    return parse_revision((record or {}).get("updated_at"))


@dataclass(frozen=True)
class Moment:
    """A moment time gives a rule for one record: a date trigger's, a ``for:``'s end, a wake."""

    rule: str
    kind: Literal["date", "for", "wait"]
    at: dt.datetime | None  # None: there is none (the field is empty, the value not held ...)
    detail: str
    past: bool = False

    def text(self) -> str:
        label = {"date": "fires", "for": "duration ends", "wait": "wakes"}[self.kind]
        if self.at is None:
            return f"{label}: {self.detail}"
        when = self.at.isoformat(timespec="minutes")
        return f"{label} {when} ({self.detail})" + (" — already past" if self.past else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": self.at.isoformat() if self.at else None,
            "detail": self.detail,
            "past": self.past,
        }


def moments(
    rule: Rule,
    record: dict[str, Any] | None,
    calendar: Calendar,
    now: dt.datetime,
    *,
    steps: Sequence[StepPreview] = (),
    backfill: float = 0.0,
) -> list[Moment]:
    """The moments of ``rule`` for ``record`` as of ``now``: its date trigger's or ``for:``'s, and
    each ``wait`` step's among ``steps`` (the previews of a rule that fires)."""
    found: list[Moment] = []
    trigger = rule.trigger
    if isinstance(trigger, RecordTrigger) and trigger.at is not None:
        found.append(_date(rule.id, trigger, record, calendar, now, backfill))
    elif isinstance(trigger, RecordTrigger) and trigger.for_ is not None:
        found.append(_for(rule.id, trigger, record, calendar, now, backfill))
    for step in steps:
        if step.action == "wait" and step.runs and not step.error:
            found.append(_wait(rule.id, step, calendar, now))
    return found


def _past(moment: dt.datetime, now: dt.datetime, backfill: float) -> tuple[bool, str]:
    if moment > now:
        return False, ""
    if backfill and moment.timestamp() > now.timestamp() - backfill:
        return True, "; within PPW_TRIGGER_BACKFILL: fires at once"
    return True, "; a moment past does not fire (PPW_TRIGGER_BACKFILL)"


def _date(
    rule_id: str, trigger: RecordTrigger, record: dict[str, Any] | None, calendar: Calendar,
    now: dt.datetime, backfill: float,
) -> Moment:  # fmt: skip
    try:
        found = date_moment(trigger, record, calendar)
    except (TypeError, ValueError) as exc:
        return Moment(rule_id, "date", None, f"{trigger.at} is not a date ({exc})")
    if found is None:
        return Moment(rule_id, "date", None, f"{trigger.at} is empty: nothing to fire")
    moment, date = found
    parts = [f"{trigger.at} {date.astimezone(calendar.zone).date().isoformat()}"]
    if trigger.offset:
        parts.append(trigger.offset)
    if trigger.time:
        parts.append(f"at {trigger.time}")
    past, note = _past(moment, now, backfill)
    detail = ", ".join(parts) + f", {calendar.zone.key}" + note
    return Moment(rule_id, "date", moment.astimezone(calendar.zone), detail, past)


def _for(
    rule_id: str, trigger: RecordTrigger, record: dict[str, Any] | None, calendar: Calendar,
    now: dt.datetime, backfill: float,
) -> Moment:  # fmt: skip
    name = trigger.changed[0]
    value = field_value(trigger.resource, record, name)
    if not value_matches(value, trigger.to, moments=name.startswith("custom.")):
        return Moment(rule_id, "for", None, f"{name} is {value!r}, not {trigger.to!r}: no duration runs")
    since = value_since(record)
    origin = "updated_at"
    if since is None:
        since, origin = now, "now: the record has no updated_at"
    try:
        end = for_end(trigger, since, calendar)
    except CalendarError as exc:
        return Moment(rule_id, "for", None, str(exc))
    past, note = _past(end, now, backfill)
    detail = f"{name} = {value!r} for {trigger.for_}, from {since.isoformat(timespec='seconds')} ({origin})"
    return Moment(rule_id, "for", end.astimezone(calendar.zone), detail + note, past)


def _wait(rule_id: str, step: StepPreview, calendar: Calendar, now: dt.datetime) -> Moment:
    # lazy: the actions registry is heavy and only waits need it
    from worker.actions.errors import PermanentStepError
    from worker.actions.wait import WaitParams, WaitStep

    params = dict((step.request or {}).get("params") or {})
    name = f"step {step.id or step.index + 1}"
    try:
        due = WaitStep.due(WaitParams.model_validate(params), calendar, now.timestamp())
    except (ValueError, PermanentStepError) as exc:
        return Moment(rule_id, "wait", None, f"{name}: cannot tell ({exc})")
    what = ", ".join(f"{k} {v}" for k, v in params.items() if k in ("for", "until", "offset", "at"))
    moment = dt.datetime.fromtimestamp(due, calendar.zone)
    return Moment(rule_id, "wait", moment, f"{name}: {what}, if the run reached it at {now.isoformat()}")


@dataclass
class Explanation:
    """Every rule's verdict for one record."""

    resource: str
    record_id: str
    event: Event
    snapshot: bool
    notes: list[str] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    pending: bool = True
    moments: list[Moment] = field(default_factory=list)

    @property
    def firing(self) -> list[str]:
        """Rules the next poll would fire (none when nothing changed since the last poll)."""
        return [e.rule.id for e in self.evaluations if e.matched] if self.pending else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "record_id": self.record_id,
            "event_type": self.event.type,
            "changes": {k: {"old": v.old, "new": v.new} for k, v in self.event.changes.items()},
            "snapshot": self.snapshot,
            "pending": self.pending,
            "notes": self.notes,
            "firing": self.firing,
            "rules": [e.to_dict() for e in self.evaluations],
            "moments": {m.rule: m.to_dict() for m in self.moments},
        }


def explain(
    engine: Engine,
    resource: str,
    record: dict[str, Any] | None,
    snapshot: dict[str, Any] | None = None,
    *,
    changes: dict[str, Change] | None = None,
    snapshot_available: bool = True,
    calendar: Calendar | None = None,
    now: dt.datetime | None = None,
    backfill: float = 0.0,
) -> Explanation:
    """Evaluate every rule for ``record`` against its stored ``snapshot``.

    ``changes`` are the poller's own comparison of record and snapshot when the caller has it
    (it compares references by id, datetimes as instants ...); without it the fields are diffed here.
    ``snapshot_available`` False means no snapshot store could be read (so "no snapshot" does not
    mean "new record"); the record is then explained as if it had just been updated with no known
    changes, and rules that need a change say so.
    """
    notes: list[str] = []
    pending = True
    if not snapshot_available:
        notes.append("no stored snapshot could be read: explaining against the live record only")
        event = synthesize_event(resource, record, record, type="updated")
        event = event.model_copy(update={"changes": {}, "previous": None})
    elif record is None:
        notes.append(
            "the record no longer exists: the next reconcile (PPW_RECONCILE_INTERVAL, or `ppw poll "
            "reconcile`) reports it as deleted, and these rules would see it so"
        )
        event = synthesize_event(resource, None, snapshot, type="deleted")
    elif snapshot is None:
        notes.append("no snapshot stored: the next poll reports this record as created")
        event = synthesize_event(resource, record, None)
    else:
        event = synthesize_event(resource, record, snapshot)
        if changes is not None:
            event = event.model_copy(update={"changes": changes})
        if event.changes:
            notes.append(f"changed since the last poll: {', '.join(sorted(event.changes))}")
        else:
            pending = False
            notes.append("unchanged since the last poll: no rule fires until it changes")
    evaluations = engine.evaluate_all(event)
    found: list[Moment] = []
    if calendar is not None:
        moment = now or dt.datetime.now(dt.UTC)
        for item in evaluations:
            if item.rule.rule.resource == resource:
                steps = item.steps if item.matched else ()
                found += moments(item.rule.rule, record, calendar, moment, steps=steps, backfill=backfill)
        notes.extend(f"{m.rule}: {m.text()}" for m in found)
    record_id = event.record_id
    return Explanation(resource, record_id, event, snapshot is not None, notes, evaluations, pending, found)


def event_from_data(data: dict[str, Any], *, resource: str | None = None) -> Event:
    """An :class:`Event` from a sample file: a full event (``id``, ``type``, ``resource`` ...) or
    a short form where ``id`` and ``revision`` are filled in and ``changes`` may be given as
    ``{field: {old, new}}`` or left out (then computed from ``previous``).

    A resource spelled as PracticePanther spells it (``TimeEntries``) becomes the catalogue name,
    which is what the rules' triggers hold; a webhook's or schedule's ``resource`` is kept as is.
    """
    data = dict(data)
    if resource:
        data.setdefault("resource", resource)
    if isinstance(data.get("resource"), str):
        data["resource"] = resources.resolve_name(data["resource"]) or data["resource"]
    if "id" in data and "revision" in data:
        return Event.model_validate(data)
    record = data.get("record") or {}
    previous = data.get("previous")
    kind = cast(EventType, data.get("type") or ("updated" if previous is not None else "created"))
    event = synthesize_event(
        str(data.get("resource") or ""),
        record or None,
        previous,
        type=kind,
        origin=str(data.get("origin", "practicepanther")),
        connection=str(data.get("connection", "default")),
    )
    if "changes" in data:
        changes = {k: Change.model_validate(v) for k, v in (data["changes"] or {}).items()}
        event = event.model_copy(update={"changes": changes})
    if data.get("record_id"):
        event = event.model_copy(update={"record_id": str(data["record_id"])})
    if data.get("rule"):  # a ``due`` event names the timed rule whose moment came
        event = event.model_copy(update={"rule": str(data["rule"])})
    return event


def explain_live(engine: Engine, settings: Settings, resource: str, record_id: str) -> Explanation:
    """:func:`explain` for a record fetched from PracticePanther now, against the snapshot the
    poller stored for it (read from ``settings.state_url`` under ``settings.connection_id``).

    Raises :class:`~worker.practicepanther.errors.PracticePantherError` when the record cannot be
    fetched (a 404 means deleted and is explained as such).
    """
    store = open_store(settings.state_url)
    try:
        with PracticePantherClient(settings, store) as client:
            try:
                record: dict[str, Any] | None = client.get(resource, record_id)
            except NotFound:
                record = None
        snapshot, changes, available = stored_snapshot(
            store, settings.connection_id, resource, record_id, record
        )
    finally:
        store.close()
    return explain(
        engine, resource, record, snapshot, changes=changes, snapshot_available=available,
        calendar=Calendar.from_settings(settings), backfill=settings.trigger_backfill,
    )  # fmt: skip


def stored_snapshot(
    store: StateStore, connection: str, resource: str, record_id: str, record: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Change] | None, bool]:
    """The poller's snapshot of a record (as record fields), its comparison with ``record`` made the
    way the poller makes it, and whether snapshots could be read at all."""
    try:  # lazy: the polling package is optional for the rules library
        from worker.polling.cursors import load_snapshots
        from worker.polling.snapshots import snapshotter_for
    except ImportError:
        return None, None, False

    snapshot = load_snapshots(store, connection, resource, [record_id]).get(record_id)
    if snapshot is None:
        return None, None, True
    snapshotter = snapshotter_for(store, connection, resources.get(resource), persist=False)
    changes = snapshotter.changes(snapshot, record, record_id) if record is not None else None
    previous = snapshotter.previous(snapshot, record_id) or {}
    return {"id": record_id, **previous}, changes, True
