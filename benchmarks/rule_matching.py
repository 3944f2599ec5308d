"""Rule matching throughput: events per second matched against 100 loaded rules, on one core.

The rules are a realistic mix (most watch matters, tasks and time entries; transitions, field
filters, one to three Jinja conditions, ``any:`` blocks) and the events a mix of created/updated/
deleted changes to those resources and others, with records shaped by the catalogue. The same
events are also put through a bare loop (the dictionary lookup every dispatcher does anyway), so
the result shows what the rules themselves cost.

    python -m benchmarks.rule_matching [n_events] [n_rules]

Target: at least 20,000 events/s with 100 rules.
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

from worker.events import Change, Event
from worker.practicepanther import resources
from worker.rules.checker import CheckConfig, sample_record
from worker.rules.engine import Engine
from worker.rules.loader import load_text
from worker.rules.ruleset import RuleSet
from worker.settings import Settings

TARGET_EVENTS_PER_SECOND = 20_000

#: (resource, share of the rules)
_RULE_MIX = [
    ("matters", 0.35),
    ("tasks", 0.2),
    ("time_entries", 0.15),
    ("payments", 0.1),
    ("contacts", 0.1),
    ("notes", 0.1),
]
#: (resource, share of the events): some events are for resources no rule watches.
_EVENT_MIX = [
    ("matters", 0.3),
    ("tasks", 0.25),
    ("time_entries", 0.15),
    ("payments", 0.05),
    ("contacts", 0.1),
    ("notes", 0.05),
    ("events", 0.05),
    ("accounts", 0.05),
]

_TEMPLATES: dict[str, list[str]] = {
    "matters": [
        "trigger: {{resource: matters, on: updated, changed: status, from: Open, to: Closed}}\n"
        "conditions:\n  - record.account_ref is not none\n"
        "  - \"'pro bono' not in (record.tags | map(attribute='name') | map('lower') | list)\"",
        "trigger: {{resource: matters, on: created}}\nconditions:\n  - record.status in ['Open', 'Pending']",
        "trigger: {{resource: matters, on: updated, changed: [assigned_to_users, close_date]}}\n"
        "conditions:\n  - any:\n      - record.number > {n}\n      - record.status == 'Archived'",
    ],
    "tasks": [
        "trigger: {{resource: tasks, on: updated, changed: status, to: Completed}}\n"
        "conditions:\n  - record.matter_ref is not none",
        "trigger: {{resource: tasks, on: created}}\nconditions:\n  - record.priority == 'High'\n"
        "  - record.subject is not none and 'urgent' in record.subject | lower",
    ],
    "time_entries": [
        "trigger: {{resource: time_entries, on: [created, updated], changed: hours}}\n"
        "conditions:\n  - record.hours is not none and record.hours > {h}",
        "trigger: {{resource: time_entries, on: created}}\nconditions:\n  - not record.is_billable",
    ],
    "payments": [
        "trigger: {{resource: payments, on: created}}\n"
        "conditions:\n  - record.total_amount > {n}\n  - record.status is none or record.status == 'Success'",
    ],
    "contacts": [
        "trigger: {{resource: contacts, on: created}}\nconditions:\n  - not record.email",
    ],
    "notes": [
        "trigger: {{resource: notes, on: [created, updated]}}\n"
        "conditions:\n  - record.matter_ref is not none",
    ],
}


def build_rules(n_rules: int, seed: int = 7) -> RuleSet:
    """``n_rules`` rules in the mix above, loaded and checked like rule files."""
    rng = random.Random(seed)
    blocks: list[str] = []
    for index in range(n_rules):
        resource = _pick(rng, _RULE_MIX)
        body = rng.choice(_TEMPLATES[resource]).format(n=rng.randint(1, 2000), h=rng.choice([6, 8, 10]))
        step = '  - type: log\n    with: {message: "{{ record.id }}"}\n'
        blocks.append(f"id: bench-{index}\n{body}\nsteps:\n{step}")
    rules = []
    for index, block in enumerate(blocks):
        loaded = load_text(block, f"bench-{index}.yaml", config=CheckConfig())
        assert loaded.ok, [d.format() for d in loaded.diagnostics]
        rules.extend(loaded.rules)
    return RuleSet(rules=tuple(rules))


def build_events(n_events: int, seed: int = 11) -> list[Event]:
    rng = random.Random(seed)
    samples = {name: sample_record(resources.get(name).model) for name, _ in _EVENT_MIX}
    events: list[Event] = []
    for index in range(n_events):
        resource = _pick(rng, _EVENT_MIX)
        record = dict(samples[resource])
        record["id"] = f"r{index}"
        kind = rng.choices(["created", "updated", "deleted"], [0.3, 0.65, 0.05])[0]
        changes: dict[str, Change] = {}
        previous = None
        if resource == "matters":
            record["status"] = rng.choice(["Open", "Closed", "Pending", "Archived"])
            record["number"] = rng.randint(1, 3000)
        if resource == "time_entries":
            record["hours"] = round(rng.uniform(0.1, 12), 1)
        if resource == "payments":
            record["total_amount"] = rng.randint(10, 5000)
        if kind == "updated":
            field = rng.choice([n for n in record if n != "id"])
            old = "Open" if field == "status" else None
            changes = {field: Change(old=old, new=record[field])}
            previous = {**record, field: old}
        events.append(
            Event.build(
                type=kind,  # type: ignore[arg-type]
                resource=resource,
                record_id=record["id"],
                revision=str(index),
                record=record,
                previous=previous,
                changes=changes,
            )
        )
    return events


def _pick(rng: random.Random, mix: list[tuple[str, float]]) -> str:
    return rng.choices([name for name, _ in mix], [share for _, share in mix])[0]


def run(n_events: int = 20_000, n_rules: int = 100) -> dict[str, Any]:
    """Match ``n_events`` events against ``n_rules`` rules; returns the throughput figures."""
    ruleset = build_rules(n_rules)
    engine = Engine(ruleset, settings=Settings(timezone="America/New_York"))
    events = build_events(n_events)

    started = time.perf_counter()
    matched = 0
    for event in events:
        matched += len(engine.match(event))
    engine_seconds = time.perf_counter() - started

    index = {(r.rule.resource, kind): r for r in ruleset for kind in ("created", "updated", "deleted")}
    started = time.perf_counter()
    hits = 0
    for event in events:
        hits += (event.resource, event.type) in index
    bare_seconds = max(time.perf_counter() - started, 1e-9)

    rate = n_events / engine_seconds
    return {
        "events": n_events,
        "rules": len(ruleset),
        "matches": matched,
        "matches_per_event": round(matched / n_events, 3),
        "seconds": round(engine_seconds, 4),
        "events_per_second": round(rate),
        "bare_loop_events_per_second": round(n_events / bare_seconds),
        "microseconds_per_event": round(engine_seconds / n_events * 1e6, 2),
        "target_events_per_second": TARGET_EVENTS_PER_SECOND,
        "meets_target": rate >= TARGET_EVENTS_PER_SECOND,
    }


def main(argv: list[str]) -> int:
    n_events = int(argv[0]) if argv else 20_000
    n_rules = int(argv[1]) if len(argv) > 1 else 100
    print(json.dumps(run(n_events=n_events, n_rules=n_rules), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
