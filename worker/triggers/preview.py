"""Events for ``ppw rules test``: a webhook delivery from a payload file, a schedule slot at a time.

Nothing is queued and nothing is written: a payload is checked against the hook's schema and made
into the event the intake would queue; a slot runs its rule's query (read-only) against the
configured PracticePanther (live or the sandbox) unless results are given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema

from worker.events import Event
from worker.rules.ruleset import LoadedRule
from worker.settings import Settings
from worker.triggers.events import digest, schedule_event, webhook_event
from worker.triggers.options import TriggerOptions
from worker.triggers.query import Lister, RenderedQuery, render_query, run_query
from worker.triggers.slots import latest_slot, next_slot, zone_of


@dataclass
class PayloadPreview:
    """The event a delivery of ``payload`` to ``hook`` becomes, and what the schemas say of it."""

    hook: str
    event: Event
    problems: list[str] = field(default_factory=list)


def hooks_of(rules: Iterable[LoadedRule]) -> list[str]:
    names: list[str] = []
    for loaded in rules:
        trigger = loaded.rule.webhook_trigger
        if trigger is not None and trigger.webhook not in names:
            names.append(trigger.webhook)
    return names


def payload_preview(
    rules: Iterable[LoadedRule], payload: Any, *, hook: str | None = None, connection: str = "default"
) -> PayloadPreview:
    """The webhook event for ``payload``; ``hook`` may be left out when the rules listen on one hook.

    Raises ``ValueError`` when the hook is unknown or ambiguous.
    """
    rules = list(rules)
    hooks = hooks_of(rules)
    if hook is None:
        if len(hooks) != 1:
            choices = " or ".join(hooks)
            raise ValueError(
                f"say which hook: --hook {choices}" if hooks else "the rules listen on no webhook"
            )
        hook = hooks[0]
    elif hook not in hooks:
        raise ValueError(f"no rule listens on /hooks/{hook} (hooks: {', '.join(hooks) or 'none'})")
    problems: list[str] = []
    for loaded in rules:
        trigger = loaded.rule.webhook_trigger
        if trigger is None or trigger.webhook != hook or trigger.schema_ is None:
            continue
        validator = jsonschema.Draft202012Validator(
            trigger.schema_, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        for error in validator.iter_errors(payload):
            where = "/" + "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{loaded.id}: {where}: {error.message}")
    body = repr(payload).encode()
    event = webhook_event(
        hook,
        payload,
        delivery=digest("test", hook, body),
        received_at=dt.datetime.now(dt.UTC),
        connection=connection,
    )
    return PayloadPreview(hook, event, problems)


@dataclass
class SlotPreview:
    """One schedule rule's slot at or before the requested time, its query and its event."""

    rule: LoadedRule
    slot: dt.datetime
    next_slots: list[dt.datetime]
    event: Event
    query: RenderedQuery | None = None
    truncated: bool = False


def parse_at(text: str, zone: ZoneInfo) -> dt.datetime:
    """An ISO time; without an offset it is read in ``zone`` (the schedule's time zone)."""
    moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def slot_preview(
    loaded: LoadedRule,
    at: str | dt.datetime,
    settings: Settings,
    *,
    client: Callable[[], Lister] | None = None,
    results: list[dict[str, Any]] | None = None,
    options: TriggerOptions | None = None,
) -> SlotPreview:
    """The event the slot at (or last before) ``at`` would fire. The query runs through ``client``
    unless ``results`` are given; with neither, ``results`` is empty."""
    trigger = loaded.rule.schedule_trigger
    if trigger is None:
        raise ValueError(f"rule {loaded.id} has no schedule trigger")
    options = options or TriggerOptions.from_settings(settings)
    zone = zone_of(trigger, settings.timezone)
    moment = parse_at(at, zone) if isinstance(at, str) else at
    slot = latest_slot(trigger, moment, zone)
    following = [next_slot(trigger, slot, zone)]
    for _ in range(2):
        following.append(next_slot(trigger, following[-1], zone))
    rendered: RenderedQuery | None = None
    truncated = False
    found: list[dict[str, Any]] | None = None
    if trigger.query is not None:
        rendered = render_query(
            trigger.query,
            slot.astimezone(zone),
            settings,
            rule_id=loaded.id,
            limit=options.schedule_query_limit,
        )
        if results is not None:
            found = list(results)
        elif client is not None:
            outcome = run_query(rendered, client())
            found, truncated = outcome.records, outcome.truncated
        else:
            found = []
    event = schedule_event(
        loaded.id,
        slot,
        timezone=zone.key,
        resource=trigger.query.resource if trigger.query is not None else None,
        results=found,
        truncated=truncated,
        connection=settings.connection_id,
        detected_at=slot,
    )
    return SlotPreview(loaded, slot, following, event, rendered, truncated)
