"""The true old value of every changed field, against the sandbox over HTTP, on both backends.

Random edits of scalars, references, lists and custom field values; every ``updated`` event
must show, per field, the value the previous listing had and the one the new listing has. And
snapshots stored by earlier versions (formats 1 and 2) upgrade: old values unknown once, said so,
then exact; ``ppw poll once --dry-run`` shows them, ``?`` where unknown.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.polling.conftest import Harness
from worker.cli import app
from worker.polling import Poller, cursors
from worker.polling.dictionaries import dictionary_key
from worker.polling.snapshots import Snapshot, Snapshotter, content_hash, slot
from worker.practicepanther import customfields, resources
from worker.settings import get_settings
from worker.state import open_store

MATTERS = resources.get("matters")
VOLATILE = {"updated_at", "created_at"}


def _firm(harness: Harness) -> dict[str, Any]:
    """Users, clients, opposing counsel and the six matter custom fields, made in the sandbox."""
    mutate = harness.admin.mutate
    fields = mutate(
        [
            {"op": "create", "resource": "custom_fields", "data": {"label": label, "value_type": kind,
                                                                    "scope": "matter"}}
            for label, kind in (("Case Stage", "DropDownList"), ("Statute of Limitations", "Date"),
                                ("Referral Source", "TextBox"), ("Contingency %", "Number"),
                                ("Conflict Check", "Checkbox"), ("Opposing Counsel", "Contact"))
        ]
    )  # fmt: skip
    users = mutate(
        [
            {"op": "create", "resource": "users", "data": {"first_name": f"U{i}", "last_name": "Lee",
                                                            "email": f"u{i}@firm.example"}}
            for i in range(4)
        ]
    )  # fmt: skip
    accounts = mutate(
        [{"op": "create", "resource": "accounts", "data": {"company_name": f"Client {i}"}} for i in range(4)]
    )
    counsel = mutate(
        [
            {"op": "create", "resource": "contacts",
             "data": {"first_name": f"Counsel {i}", "account_ref": {"id": accounts[0]["id"]}}}
            for i in range(3)
        ]
    )  # fmt: skip
    return {"fields": [f["id"] for f in fields], "users": [u["id"] for u in users],
            "accounts": [a["id"] for a in accounts], "counsel": [c["id"] for c in counsel]}  # fmt: skip


def _custom(firm: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    stage, statute, referral, contingency, conflict, opposing = firm["fields"]
    return [
        {
            "custom_field_ref": {"id": stage},
            "value_string": rng.choice(["Intake", "Discovery", "Settlement"]),
        },
        {"custom_field_ref": {"id": statute}, "value_date_time": f"2027-0{rng.randint(1, 9)}-01T00:00:00"},
        {"custom_field_ref": {"id": referral}, "value_string": rng.choice(["Web", "Friend", "Radio"])},
        {"custom_field_ref": {"id": contingency}, "value_number": rng.choice([25, 33.3, 40])},
        {"custom_field_ref": {"id": conflict}, "value_boolean": rng.random() < 0.5},
        {"custom_field_ref": {"id": opposing}, "contact_ref": {"id": rng.choice(firm["counsel"])}},
    ]


def _edit(firm: dict[str, Any], rng: random.Random, current: dict[str, Any]) -> dict[str, Any]:
    """One random edit, as a body of the fields it changes (the sandbox keeps the others)."""
    kind = rng.choice(["status", "notes", "account", "users", "tags", "custom", "dates", "several"])
    edit: dict[str, Any] = {}
    if kind in ("status", "several"):
        edit["status"] = rng.choice([s for s in ("Open", "Pending", "Closed") if s != current["status"]])
    if kind in ("notes", "several"):
        edit["notes"] = None if current.get("notes") else f"note {rng.random():.6f}"
    if kind == "account":
        others = [a for a in firm["accounts"] if a != current["account_ref"]["id"]]
        edit["account_ref"] = {"id": rng.choice(others)}
    if kind == "users":
        edit["assigned_to_users"] = [{"id": u} for u in rng.sample(firm["users"], rng.randint(1, 3))]
    if kind in ("tags", "several"):
        edit["tags"] = [] if current.get("tags") else ["Urgent", "Litigation"]
    if kind == "custom":
        edit["custom_field_values"] = _custom(firm, rng)
    if kind == "dates":
        edit["close_date"] = None if current.get("close_date") else "2027-03-01T00:00:00"
    return edit


def _expected(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    fields = {k: (old.get(k), new.get(k)) for k in {*old, *new} - VOLATILE if old.get(k) != new.get(k)}
    return {**fields, **customfields.expand_changes("matters", old, new)}


def test_random_edits_show_every_true_old_value(harness: Harness) -> None:
    rng = random.Random(16)
    firm = _firm(harness)
    bodies = [
        {"name": f"Matter {i}", "status": "Open", "account_ref": {"id": firm["accounts"][i % 4]},
         "assigned_to_users": [{"id": firm["users"][i % 4]}], "tags": ["Litigation"] if i % 2 else [],
         "open_date": "2026-01-05T00:00:00", "rate": "Hourly", "custom_field_values": _custom(firm, rng)}
        for i in range(12)
    ]  # fmt: skip
    created = harness.admin.mutate([{"op": "create", "resource": "matters", "data": b} for b in bodies])
    assert harness.poll().outcome == "primed"
    listed = {m["id"]: harness.client.get("matters", m["id"]) for m in created}
    unknown = 0
    for _ in range(6):
        edited = rng.sample(sorted(listed), 4)
        for rid in edited:
            harness.update("matters", rid, **_edit(firm, rng, listed[rid]))
        harness.emitted.clear()
        harness.poll()
        by_id = {e.record_id: e for e in harness.emitted}
        assert set(by_id) <= set(edited)
        for rid, event in by_id.items():
            assert event.type == "updated"
            changes = {name: (c.old, c.new) for name, c in event.changes.items()}
            assert changes == _expected(listed[rid], event.record), rid
            unknown += sum(not c.old_known for c in event.changes.values())
            assert event.previous == listed[rid]
            listed[rid] = event.record
    assert unknown == 0


def _format2(record: dict[str, Any], keep: set[str]) -> str:
    """The JSON an earlier ppw stored for ``record`` (format 2: ``keep`` by value, digests)."""
    snapper = Snapshotter(MATTERS)
    normals = snapper.normals(record)
    values = {n: record[n] for n in normals if n in keep}
    slots = ["." if n not in normals else "=" if n in values else slot(normals[n]) for n in snapper.layout]
    packed = "".join(slots).rstrip(".")
    return Snapshot(
        revision=snapper.revision(record),
        content=content_hash(normals),
        values=values,
        packed=snapper.tag + packed,
        format=2,
    ).dumps()


FIRST_FORMAT = '{{"r":"{revision}","h":"00","v":{{"status":"{status}"}},"d":{{"name":"00"}}}}'


@pytest.mark.parametrize("written", ["format 1", "format 2"])
def test_snapshots_of_earlier_versions_upgrade(harness: Harness, written: str) -> None:
    [matter] = harness.create("matters", name="Smith v. Jones")
    harness.poll()
    record = harness.client.get("matters", matter["id"])
    revision = Snapshotter(MATTERS).revision(record)
    stored = (
        _format2(record, keep={"status"})
        if written == "format 2"
        else FIRST_FORMAT.format(revision=revision, status=record["status"])
    )
    key = cursors.snapshot_key(harness.connection, "matters")
    harness.store.hset(key, {matter["id"]: stored})  # as the earlier version left it
    harness.update("matters", matter["id"], status="Closed", name="Smith v. Jones II")
    harness.emitted.clear()
    harness.poll()
    [event] = harness.emitted
    assert event.changes["status"].old == "Open" and event.changes["status"].old_known
    assert event.changes["name"].old is None and event.changes["name"].old_known is False
    assert harness.store.hmget_bytes(key, [matter["id"]])[0][:1] == b"\x03"  # format 3 now
    harness.update("matters", matter["id"], name="Smith v. Jones III")
    harness.emitted.clear()
    harness.poll()
    [event] = harness.emitted
    assert {n: (c.old, c.new, c.old_known) for n, c in event.changes.items()} == {
        "name": ("Smith v. Jones II", "Smith v. Jones III", True),
        "display_name": (event.previous["display_name"], event.record["display_name"], True),
    }


def test_a_lost_dictionary_is_loud_and_loses_no_change(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.create("matters", 250)  # enough records for priming to train a dictionary
    harness.poll()
    dicts = dictionary_key(harness.connection, "matters")
    current = harness.store.hmget_bytes(dicts, ["current"])[0]
    assert current
    [record] = harness.create("matters", name="After priming")
    harness.poll()
    harness.store.delete(dicts)  # a partial restore of the state, say
    harness.update("matters", record["id"], status="Closed")
    harness.emitted.clear()
    other = open_store(harness.store.url)  # another process: no dictionary cached
    try:
        with caplog.at_level("ERROR"):
            poller = Poller(harness.client, other, connection=harness.connection, options=harness.options)
            poller.poll("matters", harness.emitted.extend)
    finally:
        other.close()
    [event] = harness.emitted
    assert event.changes["status"].new == "Closed" and event.changes["status"].old_known is False
    assert current.decode() in caplog.text and "dictionary" in caplog.text


Invoke = Callable[..., Result]


@pytest.fixture
def ppw(harness: Harness, tmp_path: Path) -> Iterator[Invoke]:
    settings = harness.settings
    env = {
        "PPW_PP_BASE_URL": settings.pp_base_url,
        "PPW_PP_CLIENT_ID": settings.pp_client_id,
        "PPW_PP_CLIENT_SECRET": settings.pp_client_secret.get_secret_value(),
        "PPW_PP_REDIRECT_URI": settings.pp_redirect_uri,
        "PPW_STATE_URL": harness.store.url,
        "PPW_CONNECTION_ID": harness.connection,
        "PPW_BROKER_URL": "memory://",
        "PPW_RULES_DIR": str(tmp_path),
    }
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        get_settings.cache_clear()
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    yield invoke
    get_settings.cache_clear()


def test_dry_run_shows_true_old_values_and_a_question_mark_where_unknown(
    ppw: Invoke, harness: Harness
) -> None:
    [known, upgraded] = harness.create("matters", 2, status="Open")
    assert ppw("poll", "once", "matters").exit_code == 0
    key = cursors.snapshot_key(harness.connection, "matters")
    record = harness.client.get("matters", upgraded["id"])
    harness.store.hset(key, {upgraded["id"]: _format2(record, keep=set())})
    harness.update("matters", known["id"], status="Closed")
    harness.update("matters", upgraded["id"], status="Closed")
    dry = ppw("poll", "once", "matters", "--dry-run")
    assert dry.exit_code == 0, dry.output
    blocks = dry.output.split("updated  ")
    [known_block] = [b for b in blocks if b.startswith(f"matters {known['id']}")]
    [upgraded_block] = [b for b in blocks if b.startswith(f"matters {upgraded['id']}")]
    assert re.search(r"^    status: Open -> Closed$", known_block, re.MULTILINE), dry.output
    assert re.search(r"^    status: \? -> Closed$", upgraded_block, re.MULTILINE), dry.output
    assert "null" not in upgraded_block


def test_run_history_marks_unknown_old_values() -> None:
    """``ppw runs show`` lists the changed fields (names only: values are record data)."""
    from worker.delivery.history import EventSummary, Run
    from worker.delivery.report import run_detail

    event = EventSummary(type="updated", resource="matters", record_id="m1", revision="r",
                         changed={"status": True, "name": False})  # fmt: skip
    run = Run(id="run1", connection="c", event_id="e1", event=event, rule_id="r", rule_version="v")
    assert "changes   status, name (old ?)" in run_detail(run)
    assert "changes" not in run_detail(
        run.model_copy(update={"event": event.model_copy(update={"changed": {}})})
    )
