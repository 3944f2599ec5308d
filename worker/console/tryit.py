"""The "try it" form of a rule's page: ``ppw rules explain`` on a live record, or ``ppw rules test``
on pasted JSON, for that one rule, with no side effect.

It calls the library the commands call: :func:`~worker.rules.explain.explain_live` (the record is
read from PracticePanther with one GET and compared with the poller's stored snapshot, as the next
poll would) and :func:`~worker.rules.explain.event_from_data` with
:meth:`~worker.rules.engine.Engine.evaluate` for pasted JSON. Both are dry: conditions are evaluated
and steps rendered (secrets masked, as in run history), but nothing is sent, and no run, ledger
entry or event is made. The only things it may write are the PracticePanther client's own
bookkeeping (its rate-limit slots, a refreshed token), which every read of the API shares.

Everything that can go wrong with what a person typed (JSON that does not parse, an unknown
record id, a rule that watches no resource, PracticePanther not answering) is a :class:`TryError`
with a message for the page, never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.errors import PpwError
from worker.events import Event
from worker.practicepanther.errors import PracticePantherError
from worker.rules.engine import Engine
from worker.rules.explain import event_from_data, explain_live
from worker.rules.results import Evaluation
from worker.rules.ruleset import LoadedRule, RuleSet
from worker.settings import Settings

#: The longest pasted JSON and record id the form takes (the whole form is limited to 16 KiB too).
MAX_JSON = 12 * 1024
MAX_RECORD_ID = 64

#: Keys that make pasted JSON an event (``ppw rules test --event``) rather than a record.
EVENT_KEYS = frozenset({"record", "previous", "changes", "revision"})


class TryError(PpwError, ValueError):
    """What was typed cannot be tried: the message says why, for the page. ``status`` is the HTTP
    status the page is answered with (400 bad input, 404 unknown record, 502 PracticePanther)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ChangeLine:
    field: str
    old: Any
    new: Any


@dataclass
class Tried:
    """One rule's verdict for one event, as the page shows it."""

    source: str
    event: Event
    evaluation: Evaluation
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[ChangeLine]:
        return [ChangeLine(name, c.old, c.new) for name, c in sorted(self.event.changes.items())]

    @property
    def report(self) -> dict[str, Any]:
        """The evaluation as plain data (views unwrapped, dates in ISO form), as ``--format json``."""
        return self.evaluation.to_dict()


class TryIt:
    """Tries one rule of the rules in force (``ruleset()``) on a record id or pasted JSON.

    The engine is built once per rule set (a hot reload makes a new one), with the worker's
    settings, so conditions and templates see the same env, time zone and custom fields."""

    def __init__(self, settings: Settings, ruleset: Callable[[], RuleSet | None]) -> None:
        self.settings = settings
        self.ruleset = ruleset
        self._engine: tuple[RuleSet, Engine] | None = None

    def engine(self) -> Engine:
        ruleset = self.ruleset()
        if ruleset is None:
            raise TryError("no rules are loaded in this process", 404)
        cached = self._engine
        if cached is None or cached[0] is not ruleset:
            cached = (ruleset, Engine(ruleset, settings=self.settings))
            self._engine = cached
        return cached[1]

    def rule(self, rule_id: str) -> LoadedRule:
        ruleset = self.ruleset()
        found = next((r for r in ruleset.rules if r.id == rule_id), None) if ruleset is not None else None
        if found is None:
            raise TryError(f"no rule {rule_id!r} is in force", 404)
        return found

    def record(self, rule_id: str, record_id: str) -> Tried:
        """``ppw rules explain`` for the rule's resource and ``record_id``, read live."""
        loaded = self.rule(rule_id)
        trigger = loaded.rule.record_trigger
        if trigger is None:
            raise TryError(
                f"rule {rule_id!r} is triggered by a {loaded.rule.trigger_kind}, not by a record: "
                "paste an event as JSON instead"
            )
        record_id = record_id.strip()
        if (
            not record_id
            or len(record_id) > MAX_RECORD_ID
            or any(c.isspace() or c in "/?#" for c in record_id)
        ):
            raise TryError(f"{record_id[:MAX_RECORD_ID]!r} is not a record id")
        resource = trigger.resource
        try:
            explained = explain_live(self.engine(), self.settings, resource, record_id)
        except PracticePantherError as exc:
            raise TryError(
                f"could not read {resource} {record_id} from PracticePanther: {exc}", 502
            ) from None
        except ValueError:  # neither the record nor a snapshot of it: explain has nothing to go on
            raise TryError(
                f"PracticePanther has no {resource} record {record_id!r} (and the poller never saw one)", 404
            ) from None
        except PpwError as exc:  # the stored tokens or the state store
            raise TryError(f"could not read {resource} {record_id}: {exc}", 502) from None
        evaluation = next(e for e in explained.evaluations if e.rule.id == rule_id)
        notes = [*explained.notes]
        if not explained.pending:
            notes.append("so this rule does not fire now, whatever its conditions say")
        return Tried(
            f"{resource} {record_id}, read live from PracticePanther", explained.event, evaluation, notes
        )

    def pasted(self, rule_id: str, text: str) -> Tried:
        """``ppw rules test`` with pasted JSON: a record (as ``--record``, a ``created`` event of
        the rule's resource) or an event (as ``--event``: ``type``, ``record``, ``previous`` or
        ``changes`` as ``{field: {old, new}}``)."""
        loaded = self.rule(rule_id)
        data = parse_json(text)
        trigger = loaded.rule.record_trigger
        resource = trigger.resource if trigger is not None else None
        is_event = bool(EVENT_KEYS & data.keys())
        try:
            event = event_from_data(data if is_event else {"record": data}, resource=resource)
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            raise TryError(
                f"the JSON is not a {'n event' if is_event else ' record'} ppw can use: {exc}"
            ) from None
        evaluation = self.engine().evaluate(loaded, event)
        what = "event" if is_event else f"record (tried as a created {resource or 'record'})"
        return Tried(f"pasted {what}", event, evaluation)


def parse_json(text: str) -> dict[str, Any]:
    """A JSON object from the form, or a :class:`TryError` saying where it went wrong."""
    if not text.strip():
        raise TryError("paste a record or an event as JSON, or give a record id")
    if len(text) > MAX_JSON:
        raise TryError(f"the JSON is {len(text)} characters; at most {MAX_JSON} are taken")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TryError(f"the JSON does not parse: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise TryError(
            f"the JSON is a {type(data).__name__}: expected an object ({{...}}), a record or an event"
        )
    return data
