"""Date-relative and "for" triggers: one alarm per (rule, record), set and moved by the changes
dispatch sees, rung by the scheduler's leader as a ``due`` event for that one rule.

The rules, as applied:

* ``at: <date field>`` (with ``offset:`` and ``time:``): the alarm is that field's moment in the
  firm calendar (:mod:`worker.calendar`; a date is its day in the firm's zone). A change of the
  date moves the alarm; clearing the date, deleting the record, or a moment already past removes
  it: no surprise backfill, a rule only sees moments still ahead, unless ``PPW_TRIGGER_BACKFILL``
  says how far back a moment may be and still fire (at once);
* ``changed: F, to: V, for: D``: a change of F to V sets the alarm at the change's own time (the
  record's ``updated_at``) plus D, so a restart or a late poll does not reset it; any other change
  of F removes it;
* when it rings the alarm is removed and a ``due`` event for the rule is stored and dispatched;
  dispatch reads the record again, and the rule's conditions (and, for ``for:``, that F still is
  V; for ``at:``, that the date is still the one the alarm was set for) decide on the record as it
  is then;
* the ``due`` event's id comes from (rule, record, date or change), so a record fires once per
  date value, however often its alarm is set again;
* records already tracked when an ``at:`` rule version first loads (after priming, or a new rule)
  get their alarms from their snapshots, once per rule version (:meth:`Alarms.sync`).

Keys (under ``ppw:<connection>:``): ``alarms`` (sorted set: rule, resource and record → moment),
``alarm-info`` (hash: the same member → what it was set for), ``alarms-synced`` (hash: rule →
the version whose snapshots were scanned).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.calendar import Calendar
from worker.delivery.history import RunHistory
from worker.delivery.options import DeliveryOptions
from worker.delivery.rulebook import Versions
from worker.delivery.timers import COUNT_EVERY, cancel_rule_waits
from worker.events import Event
from worker.observability import metrics
from worker.polling import cursors
from worker.polling.snapshots import SnapshotUnreadable, snapshotter_for
from worker.practicepanther import resources
from worker.rules.explain import date_moment, for_end, value_since
from worker.rules.model import RecordTrigger, Rule
from worker.rules.triggers import field_value, value_matches
from worker.settings import get_settings
from worker.state.base import StateStore, WriteBatch, key

log = logging.getLogger(__name__)

#: Alarms rung per look; more due at once ring at the next looks.
RING_BATCH = 1000
#: A retired rule's run that a worker was executing is tried again this much later (seconds).
RETIRE_RETRY = 5.0

Clock = Callable[[], float]


def alarms_key(connection: str) -> str:
    return key(connection, "alarms")


def _info_key(connection: str) -> str:
    return key(connection, "alarm-info")


def _synced_key(connection: str) -> str:
    return key(connection, "alarms-synced")


def _live_key(connection: str) -> str:
    return key(connection, "rules-live")


def _member(rule_id: str, resource: str, record_id: str) -> str:
    return "\x1f".join((rule_id, resource, record_id))


def timed(rule: Rule) -> RecordTrigger | None:
    """The rule's trigger when it is date-relative or "for" (and the rule enabled)."""
    trigger = rule.trigger
    return trigger if rule.enabled and isinstance(trigger, RecordTrigger) and trigger.timed else None


@dataclass(frozen=True)
class Setting:
    """What an alarm rings for: its moment and what it was set for (the date, or the change)."""

    due: float
    key: str


class Alarms:
    """The alarms of every connection in ``store``; ``calendar`` gives the firm calendar."""

    def __init__(self, store: StateStore, calendar: Callable[[], Calendar], *, backfill: float = 0.0) -> None:
        self.store = store
        self.calendar = calendar
        self.backfill = backfill

    # setting ------------------------------------------------------------------------------------
    def plan(self, batch: WriteBatch, event: Event, rules: Iterable[Rule], now: float) -> None:
        """Set, move or remove the alarms ``event`` concerns (into ``batch``, dispatch's write)."""
        if event.type not in ("created", "updated", "deleted"):
            return
        for rule in rules:
            trigger = timed(rule)
            if trigger is None or trigger.resource != event.resource:
                continue
            if trigger.at is not None:
                found = None if event.type == "deleted" else self.date_alarm(trigger, event.record)
                self._put(batch, event, rule, found if found is None or self._ahead(found, now) else None)
            elif event.type == "deleted":
                self._put(batch, event, rule, None)
            elif _changed(event, trigger.changed[0]):
                self._put(batch, event, rule, self._for_alarm(trigger, event))

    def _ahead(self, setting: Setting, now: float) -> bool:
        """Whether an alarm is still to ring: its moment ahead, or within the backfill window."""
        return setting.due > now - self.backfill

    def date_alarm(self, trigger: RecordTrigger, record: dict[str, Any]) -> Setting | None:
        """The moment of an ``at:`` trigger for ``record`` (None without a date)."""
        assert trigger.at is not None
        calendar = self.calendar()  # a bad calendar setting is not the record's fault: it raises
        try:
            found = date_moment(trigger, record, calendar)
        except (TypeError, ValueError) as exc:
            log.warning(
                "%s %s: %s is not a date (%s); no alarm", trigger.resource, record.get("id"), trigger.at, exc
            )
            return None
        if found is None:
            return None
        moment, date = found
        # what the alarm is for: the date as an instant, however the value was written
        date_key = date.astimezone(UTC).isoformat()
        return Setting(moment.timestamp(), date_key)

    def _for_alarm(self, trigger: RecordTrigger, event: Event) -> Setting | None:
        name = trigger.changed[0]
        now = field_value(event.resource, event.record, name)
        if not value_matches(now, trigger.to, moments=name.startswith("custom.")):
            return None  # it changed to something else: the count stops
        assert trigger.for_ is not None
        since = value_since(event.record) or event.detected_at.astimezone(UTC)
        due = for_end(trigger, since, self.calendar())
        return Setting(due.timestamp(), f"{name}={now!r}@{since.isoformat()}")

    def _put(self, batch: WriteBatch, event: Event, rule: Rule, setting: Setting | None) -> None:
        member = _member(rule.id, event.resource, event.record_id)
        if setting is None:
            batch.zrem(alarms_key(event.connection), member)
            batch.hdel(_info_key(event.connection), member)
            return
        info = {"rule": rule.id, "resource": event.resource, "record_id": event.record_id, "key": setting.key}
        batch.zadd(alarms_key(event.connection), {member: setting.due})
        batch.hset(_info_key(event.connection), {member: json.dumps(info)})

    # ringing ------------------------------------------------------------------------------------
    def ring(self, connection: str, now: float, limit: int = RING_BATCH) -> list[Event]:
        """The ``due`` events of the alarms due now, removed from the index in one write."""
        due = self.store.zrange_by_score(alarms_key(connection), maximum=now, limit=limit)
        if not due:
            return []
        members = [member for member, _ in due]
        infos = self.store.hmget(_info_key(connection), members)
        with self.store.batch() as batch:
            batch.zrem(alarms_key(connection), *members)
            batch.hdel(_info_key(connection), *members)
        events = []
        for (_member_id, moment), raw in zip(due, infos, strict=True):
            if raw is None:
                continue
            info = json.loads(raw)
            events.append(
                Event.build(
                    type="due",
                    resource=info["resource"],
                    record_id=info["record_id"],
                    revision=f"due:{info['rule']}:{info['key']}",
                    connection=connection,
                    record={"id": info["record_id"]},
                    rule=info["rule"],
                    detected_at=datetime.fromtimestamp(moment, UTC),
                )
            )
        return events

    def pending(self, connection: str) -> int:
        return self.store.zcard(alarms_key(connection))

    def drop_rules(self, connection: str, rule_ids: Iterable[str]) -> int:
        """Remove every alarm of these rules (deleted or disabled), and their scan marks, so a
        rule that comes back is scanned again; how many alarms were removed."""
        prefixes = tuple(f"{rule_id}\x1f" for rule_id in rule_ids)
        if not prefixes:
            return 0
        members = [m for m, _ in self.store.zrange_by_score(alarms_key(connection)) if m.startswith(prefixes)]
        with self.store.batch() as batch:
            for start in range(0, len(members), 1000):
                part = members[start : start + 1000]
                batch.zrem(alarms_key(connection), *part)
                batch.hdel(_info_key(connection), *part)
            batch.hdel(_synced_key(connection), *(p[:-1] for p in prefixes))
        return len(members)

    def upcoming(self, connection: str, limit: int = 100, rule: str | None = None) -> list[dict[str, Any]]:
        """The next alarms, soonest first (``ppw timers list``): rule, resource, record, moment."""
        found = self.store.zrange_by_score(alarms_key(connection), limit=None if rule else limit)
        infos = self.store.hmget(_info_key(connection), [member for member, _ in found]) if found else []
        out: list[dict[str, Any]] = []
        for (_member_id, moment), raw in zip(found, infos, strict=True):
            info = json.loads(raw) if raw else {}
            if rule is not None and info.get("rule") != rule:
                continue
            out.append({**info, "due": moment})
            if len(out) >= limit:
                break
        return out

    # records seen before the rule ---------------------------------------------------------------
    def sync(self, connection: str, rules: Sequence[tuple[Rule, str]], now: float) -> int:
        """Alarms for the tracked records of each timed rule version not scanned yet; how many set.

        ``rules``: (rule, version) pairs. A resource not primed yet is left for later (its
        records arrive as created events, or with its priming)."""
        synced = 0
        done = self.store.hgetall(_synced_key(connection))
        for rule, version in rules:
            trigger = timed(rule)
            if trigger is None or done.get(rule.id) == version:
                continue
            if cursors.load_cursor(self.store, connection, trigger.resource) is None:
                continue
            synced += self._sync_rule(connection, rule, trigger, now)
            self.store.hset(_synced_key(connection), {rule.id: version})
        return synced

    def standing_alarm(
        self, trigger: RecordTrigger, record: dict[str, Any], now: float, counted: str | None = None
    ) -> Setting | None:
        """The alarm of a ``for:`` trigger for a record that already holds the value when the rule
        (version) first sees it, None when it does not hold it.

        When the value was set is not known, so the count starts at the best moment ppw has: the
        record's ``updated_at``, an upper bound of it (the record may have been saved since), so
        the trigger never fires early; without one, ``now``. ``counted``: the key of the alarm the
        record has already (its change was seen): that count goes on, with this duration."""
        name = trigger.changed[0]
        value = field_value(trigger.resource, record, name)
        if not value_matches(value, trigger.to, moments=name.startswith("custom.")):
            return None
        held = f"{name}={value!r}@"
        since: datetime | None = None
        if counted is not None and counted.startswith(held):
            with suppress(ValueError):
                since = datetime.fromisoformat(counted.removeprefix(held))
        since = since or value_since(record) or datetime.fromtimestamp(now, UTC)
        due = for_end(trigger, since, self.calendar())
        return Setting(due.timestamp(), f"{held}{since.isoformat()}")

    def _sync_rule(self, connection: str, rule: Rule, trigger: RecordTrigger, now: float) -> int:
        resource = resources.get(trigger.resource)
        ids = self.store.hkeys(cursors.snapshot_key(connection, resource.name))
        snapper = snapshotter_for(self.store, connection, resource, persist=False)
        count = 0
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            snapshots = cursors.load_snapshots(self.store, connection, resource.name, chunk)
            counted: dict[str, str | None] = {}
            if trigger.for_ is not None:
                members = [_member(rule.id, resource.name, record_id) for record_id in chunk]
                infos = self.store.hmget(_info_key(connection), members)
                counted = {
                    rid: json.loads(raw)["key"] if raw else None
                    for rid, raw in zip(chunk, infos, strict=True)
                }
            with self.store.batch() as batch:
                for record_id, snapshot in snapshots.items():
                    try:
                        record = snapper.restore(snapshot, record_id) if snapshot is not None else None
                    except SnapshotUnreadable:
                        record = None
                    if record is None:
                        continue
                    if trigger.at is not None:
                        setting = self.date_alarm(trigger, record)
                    else:
                        setting = self.standing_alarm(trigger, record, now, counted.get(record_id))
                    if setting is not None and self._ahead(setting, now):
                        event = Event.build(
                            type="updated", resource=resource.name, record_id=record_id, revision="sync",
                            connection=connection, record=record,
                        )  # fmt: skip
                        self._put(batch, event, rule, setting)
                        count += 1
        log.info("rule %s: %d alarm(s) set for the %s already tracked", rule.id, count, resource.name)
        return count


@dataclass
class AlarmPump:
    """Rings due alarms (the scheduler's leader, twice a second), sets those of records tracked
    before their rule (every minute), and retires the rules deleted or disabled.

    Retiring: when the rules in force change, the leader compares them with the rules it last saw
    in force (``rules-live``, kept in the state store, so a new leader carries on): each rule no
    longer loaded, or now disabled, has its waiting runs cancelled (``cancelled``, the reason
    naming the deletion or disabling, each logged and in the run history, its timer removed) and
    its pending date and "for" alarms dropped. Only the leader does it, and it is idempotent: a
    rule stays in ``rules-live`` until every one of its waiting runs could be taken (a run a
    worker is executing at that moment is tried again a few seconds later). A rule that failed to
    load is not deleted (its last good version may be back at the next edit), and nothing is
    retired while a rule file cannot be read or the rules directory is missing. An edited rule is
    not retired: its waiting runs go on with the version they started with.

    Parameters
    ----------
    alarms:
        The index.
    connection:
        The connection whose alarms ring.
    emit:
        Stores events and sends their dispatch messages (the actors' ``emit``).
    rules:
        The rules loaded now, with their versions (:meth:`EngineRuleBook.versions`).
    options:
        Retention and run lease for cancelled runs (default: from the process settings).
    """

    alarms: Alarms
    connection: str
    emit: Callable[[list[Event]], None]
    rules: Callable[[], Sequence[tuple[Rule, str]]]
    clock: Clock = time.time
    options: DeliveryOptions | None = None

    _counted: float = float("-inf")
    _settled: str | None = None  # the fingerprint of the rules last retired against
    _retry_at: float = float("-inf")

    def tick(self) -> int:
        now = self.clock()
        try:
            self.retire(now)
        except Exception:  # the alarms still ring; the retiring is tried again at the next look
            log.exception("retiring the waiting runs of deleted or disabled rules failed")
        events = self.alarms.ring(self.connection, now)
        if now - self._counted >= COUNT_EVERY:
            self._counted = now
            metrics.ALARMS_PENDING.set(self.alarms.pending(self.connection))
        if events:
            self.emit(events)
            for event in events:
                metrics.ALARMS_RUNG.inc()
                metrics.ALARM_LATENESS.observe(max(now - event.detected_at.timestamp(), 0.0))
            log.info("%d date or duration trigger(s) came due", len(events))
        return len(events)

    def sync(self) -> int:
        return self.alarms.sync(self.connection, self.rules(), self.clock())

    def retire(self, now: float | None = None) -> int:
        """Cancel the waiting runs and drop the alarms of rules deleted or disabled since the rules
        were last seen; how many runs were cancelled. No store call while the rules are unchanged."""
        now = self.clock() if now is None else now
        versions = self.rules()
        if not isinstance(versions, Versions):
            versions = Versions(versions, fingerprint=repr(sorted((r.id, v) for r, v in versions)))
        unchanged = versions.fingerprint == self._settled and now < self._retry_at
        if unchanged or not versions.complete:
            return 0
        store = self.alarms.store
        live = {rule.id: version for rule, version in versions if rule.enabled}
        disabled = {rule.id for rule, _ in versions if not rule.enabled}
        known = store.hgetall(_live_key(self.connection))
        reasons = {
            rule_id: f"the rule was {'disabled' if rule_id in disabled else 'deleted'} while the run "
            "waited (rules reloaded)"
            for rule_id in known
            if rule_id not in live and rule_id not in versions.unsure
        }
        cancelled = busy = 0
        if reasons:
            options = self.options or DeliveryOptions.from_settings(get_settings())
            history = RunHistory(store, retention=options.retention)
            done = cancel_rule_waits(history, store, self.connection, reasons, lease_ttl=options.run_lease)
            dropped = self.alarms.drop_rules(self.connection, reasons)
            cancelled, busy = done.cancelled, done.busy
            log.info(
                "rule(s) %s deleted or disabled: %d waiting run(s) cancelled, %d date or duration "
                "trigger(s) dropped%s",
                ", ".join(sorted(reasons)), cancelled, dropped,
                f"; {busy} run(s) busy, tried again shortly" if busy else "",
            )  # fmt: skip
        with store.batch() as batch:
            changed = {rule_id: v for rule_id, v in live.items() if known.get(rule_id) != v}
            if changed:
                batch.hset(_live_key(self.connection), changed)
            if reasons and not busy:
                batch.hdel(_live_key(self.connection), *reasons)
        self._settled = versions.fingerprint
        self._retry_at = now + RETIRE_RETRY if busy else float("inf")
        return cancelled


def _changed(event: Event, name: str) -> bool:
    if event.type == "created":
        return True
    return name in event.changes


def still_due(alarms: Alarms, rule: Rule, event: Event, record: dict[str, Any]) -> bool:
    """Whether a rung ``at:`` alarm still stands for ``record`` as it is now: its date unchanged."""
    trigger = timed(rule)
    if trigger is None or trigger.at is None:
        return True
    setting = alarms.date_alarm(trigger, record)
    return setting is not None and event.revision == f"due:{rule.id}:{setting.key}"
