"""Background activity: the firm's people at work, so a demo shows live changes.

At ``churn_per_minute`` the thread makes one change a person would make in the web UI: log time
on a matter, complete or start a task, open a task, move a matter through its statuses, bill a
matter's unbilled time, record a payment against an outstanding invoice, add or edit a note,
reschedule an event, take on a new client, move a matter's Case Stage along, set a matter's
Statute of Limitations, tick its Conflict Check (custom fields, when the account defines them),
and now and then delete a completed task or a note (gone from listings, ``404`` by id). Writes go
through :class:`~worker.sandbox.records.Records`, like every other write.

:data:`STEPS` names each kind of change with its weight; ``Churn.step(kind)`` makes one of a
given kind, so tests (and demos) can drive a particular change deterministically.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from worker.sandbox.clock import format_date_value, parse_timestamp
from worker.sandbox.seed import FIRST_NAMES, LAST_NAMES, MATTER_KINDS, TASK_SUBJECTS, WORK_DESCRIPTIONS
from worker.sandbox.state import SandboxState
from worker.sandbox.store import Row

log = logging.getLogger(__name__)

_MATTER_NEXT = {"Pending": "Open", "Open": "Closed", "Closed": "Archived"}
# Where a case goes from each Case Stage (Negotiation ends in Settlement or Trial).
_STAGE_NEXT: dict[str | None, tuple[str, ...]] = {
    None: ("Intake",),
    "Intake": ("Investigation",),
    "Investigation": ("Discovery",),
    "Discovery": ("Negotiation",),
    "Negotiation": ("Settlement", "Settlement", "Trial"),
    "Settlement": ("Closed",),
    "Trial": ("Closed",),
}
_LIVE = ("Open", "Pending")

# Kind of change -> (method, weight): the mix of one working day.
STEPS: dict[str, tuple[str, int]] = {
    "log_time": ("_log_time", 30),
    "progress_task": ("_progress_task", 20),
    "open_task": ("_open_task", 12),
    "move_matter": ("_move_matter", 10),
    "record_payment": ("_record_payment", 8),
    "bill_matter": ("_bill_matter", 5),
    "note": ("_note", 10),
    "reschedule_event": ("_reschedule_event", 6),
    "new_client": ("_new_client", 4),
    "case_stage": ("_case_stage", 6),
    "statute": ("_statute", 3),
    "conflict_check": ("_conflict_check", 3),
    "delete_record": ("_delete_record", 3),
}


class Churn:
    """Makes ``per_minute`` changes a minute in a daemon thread until stopped."""

    def __init__(self, state: SandboxState, per_minute: float) -> None:
        self.state = state
        self.per_minute = per_minute
        seed = state.config.seed
        self.random = random.Random(None if seed is None else seed * 7919 + 17)
        self.changes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.per_minute <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="ppw-sandbox-churn", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        interval = 60.0 / self.per_minute
        while not self._stop.wait(interval):
            try:
                self.step()
            except Exception:  # a failed change must not end the demo
                log.exception("sandbox churn step failed")

    # -- one change -----------------------------------------------------------------------
    def step(self, kind: str | None = None) -> str:
        """Make one change (of ``kind``, a key of :data:`STEPS`, when given); returns what it did.

        Without ``kind`` a weighted draw picks one; a kind with nothing to do is drawn again a
        few times, then a new client is taken on so that every step changes something.
        """
        if kind is not None and kind not in STEPS:
            raise ValueError(f"unknown churn step {kind!r}; known: {', '.join(STEPS)}")
        with self.state.db.lock:
            done = self._draw() if kind is None else (self._make(kind) or "nothing")
            self.changes += 1
            return done

    def _make(self, kind: str) -> str | None:
        action: Callable[[], str | None] = getattr(self, STEPS[kind][0])
        return action()

    def _draw(self) -> str:
        kinds, weights = list(STEPS), [weight for _method, weight in STEPS.values()]
        for _ in range(len(kinds)):
            done = self._make(self.random.choices(kinds, weights)[0])
            if done:
                return done
        return self._new_client() or "nothing"

    def _pick(self, resource: str, where: Callable[[Row], bool] = lambda _row: True) -> Row | None:
        rows = [row for row in self.state.db.iter_rows(resource) if where(row)]
        return self.random.choice(rows) if rows else None

    def _active_user(self) -> Row | None:
        return self._pick("users", lambda r: r.data.get("is_active") is not False)

    def _open_matter(self) -> Row | None:
        return self._pick("matters", lambda r: r.data.get("status") in ("Open", "Pending"))

    def _today(self) -> str:
        now = self.state.clock.now()
        return format_date_value(now.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None))

    def _log_time(self) -> str | None:
        matter, user = self._open_matter(), self._active_user()
        if matter is None or user is None:
            return None
        item = self._pick("items")
        body: dict[str, Any] = {
            "matter_ref": {"id": matter.id},
            "billed_by_user_ref": {"id": user.id},
            "date": self._today(),
            "hours": self.random.choice((0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0)),
            "rate": item.data.get("rate") if item else 250.0,
            "is_billable": self.random.random() < 0.85,
            "is_billed": False,
            "description": self.random.choice(WORK_DESCRIPTIONS),
            "item_ref": {"id": item.id} if item else None,
        }
        row = self.state.records.create("time_entries", body, trusted=True, created_by=user.id)
        return f"time entry {row.id}"

    def _progress_task(self) -> str | None:
        task = self._pick("tasks", lambda r: r.data.get("status") in ("NotCompleted", "InProgress"))
        if task is None:
            return None
        status = (
            "Completed"
            if task.data.get("status") == "InProgress" or self.random.random() < 0.6
            else "InProgress"
        )
        self.state.records.update("tasks", task.id, {"status": status})
        return f"task {task.id} -> {status}"

    def _open_task(self) -> str | None:
        matter, user = self._open_matter(), self._active_user()
        if matter is None or user is None:
            return None
        due = self.state.clock.now() + timedelta(days=self.random.randint(1, 30))
        body = {
            "subject": self.random.choice(TASK_SUBJECTS),
            "matter_ref": {"id": matter.id},
            "priority": self.random.choice(("Low", "Medium", "High")),
            "due_date": format_date_value(due.replace(hour=0, minute=0, second=0, microsecond=0)),
            "assigned_to_users": [{"id": user.id}],
        }
        row = self.state.records.create("tasks", body, trusted=True, created_by=user.id)
        return f"task {row.id}"

    def _move_matter(self) -> str | None:
        matter = self._pick("matters", lambda r: r.data.get("status") in _MATTER_NEXT)
        if matter is None:
            return None
        status = _MATTER_NEXT[str(matter.data.get("status"))]
        if status == "Closed" and self.random.random() < 0.3:
            status = "Pending"
        change: dict[str, Any] = {"status": status}
        if status == "Closed":
            change["close_date"] = self._today()
        self.state.records.update("matters", matter.id, change)
        return f"matter {matter.id} -> {status}"

    def _record_payment(self) -> str | None:
        invoice = self._pick("invoices", lambda r: (r.data.get("total_outstanding") or 0) > 0)
        bank = self._pick("bank_accounts", lambda r: r.data.get("type") == "Operating")
        if invoice is None or bank is None or not invoice.data.get("account_ref"):
            return None
        outstanding = float(invoice.data.get("total_outstanding") or 0)
        amount = outstanding if self.random.random() < 0.6 else round(outstanding / 2, 2)
        records = self.state.records
        payment = records.create(
            "payments",
            {
                "account_ref": invoice.data["account_ref"],
                "matter_ref": invoice.data.get("matter_ref"),
                "date": self._today(),
                "total_amount": amount,
                "unapplied_amount": 0.0,
                "bank_account": {"id": bank.id},
                "status": "Success",
                "notes": "Payment received",
            },
            trusted=True,
        )
        paid = round(float(invoice.data.get("total_paid") or 0) + amount, 2)
        records.update("invoices", invoice.id, {"total_paid": paid})
        return f"payment {payment.id}"

    def _bill_matter(self) -> str | None:
        """Invoice a matter's unbilled billable time and mark those entries billed."""
        unbilled: dict[str, list[Row]] = {}
        for entry in self.state.db.iter_rows("time_entries"):
            if entry.data.get("is_billable") and not entry.data.get("is_billed"):
                unbilled.setdefault((entry.data.get("matter_ref") or {}).get("id", ""), []).append(entry)
        matter_id = self.random.choice(sorted(unbilled)) if unbilled else None
        matter = self.state.db.get("matters", matter_id)
        if matter is None or matter_id is None:
            return None
        entries = unbilled[matter_id]
        amounts = [
            round(float(e.data.get("hours") or 0) * float(e.data.get("rate") or 0), 2) for e in entries
        ]
        lines = [
            {
                "quantity": e.data.get("hours"),
                "rate": e.data.get("rate") or 0.0,
                "subtotal": amount,
                "total": amount,
                "date": e.data.get("date"),
                "item_description": e.data.get("description"),
            }
            for e, amount in zip(entries, amounts, strict=True)
        ]
        total = round(sum(amounts), 2)
        records = self.state.records
        invoice = records.create(
            "invoices",
            {
                "matter_ref": {"id": matter.id},
                "account_ref": matter.data.get("account_ref"),
                "issue_date": self._today(),
                "due_date": format_date_value(
                    self.state.clock.now().replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
                    + timedelta(days=30)
                ),
                "items_time_entries": lines,
                "subtotal": total,
                "tax": 0.0,
                "discount": 0.0,
                "total": total,
                "total_paid": 0.0,
                "invoice_type": "Sale",
            },
            trusted=True,
        )
        for entry in entries:
            records.update("time_entries", entry.id, {"is_billed": True})
        return f"invoice {invoice.id}"

    def _note(self) -> str | None:
        note = self._pick("notes")
        if note is not None and self.random.random() < 0.5:
            text = (
                f"{note.data.get('note') or ''}\nFollow-up: {self.random.choice(WORK_DESCRIPTIONS)}".strip()
            )
            self.state.records.update("notes", note.id, {"note": text})
            return f"note {note.id} edited"
        matter = self._open_matter()
        if matter is None:
            return None
        row = self.state.records.create(
            "notes",
            {
                "subject": "Call notes",
                "note": self.random.choice(WORK_DESCRIPTIONS),
                "matter_ref": {"id": matter.id},
                "date": self._today(),
            },
            trusted=True,
        )
        return f"note {row.id}"

    def _reschedule_event(self) -> str | None:
        event = self._pick("events")
        if event is None or not event.data.get("start_date_time"):
            return None
        shift = timedelta(days=self.random.randint(1, 7))
        changes: dict[str, Any] = {}
        for name in ("start_date_time", "end_date_time"):
            if event.data.get(name):
                changes[name] = format_date_value(parse_timestamp(event.data[name]) + shift)
        self.state.records.update("events", event.id, changes)
        return f"event {event.id} rescheduled"

    def _new_client(self) -> str | None:
        first, last = self.random.choice(FIRST_NAMES), self.random.choice(LAST_NAMES)
        records = self.state.records
        account = records.create(
            "accounts",
            {
                "primary_contact": {
                    "first_name": first,
                    "last_name": last,
                    "email": f"{first}.{last}@example.com".lower(),
                }
            },
            trusted=True,
        )
        user = self._active_user()
        matter = records.create(
            "matters",
            {
                "name": self.random.choice(MATTER_KINDS),
                "status": "Pending",
                "account_ref": {"id": account.id},
                "open_date": self._today(),
                "assigned_to_users": [{"id": user.id}] if user else [],
            },
            trusted=True,
        )
        return f"new client {account.id} with matter {matter.id}"

    # -- custom fields and deletes ---------------------------------------------------------
    def _matter_field(self, label: str) -> Row | None:
        """The account's matter custom field labelled ``label`` (the seed defines them)."""
        return next(
            (
                row
                for row in self.state.db.iter_rows("custom_fields")
                if row.extra.get("scope") == "matter" and row.data.get("label") == label
            ),
            None,
        )

    @staticmethod
    def _custom(matter: Row, field: Row, slot: str) -> Any:
        for entry in matter.data.get("custom_field_values") or []:
            if (entry.get("custom_field_ref") or {}).get("id") == field.id:
                return entry.get(slot)
        return None

    def _set_custom(self, matter: Row, field: Row, slot: str, value: Any) -> None:
        """Set one custom value as the web UI does: the matter's other values are kept."""
        entries = [
            dict(entry)
            for entry in matter.data.get("custom_field_values") or []
            if (entry.get("custom_field_ref") or {}).get("id") != field.id
        ]
        entries.append({"custom_field_ref": {"id": field.id}, slot: value})
        self.state.records.update("matters", matter.id, {"custom_field_values": entries})

    def _case_stage(self) -> str | None:
        """Move a live matter's Case Stage one stage on (Negotiation: Settlement or Trial)."""
        field = self._matter_field("Case Stage")
        if field is None:
            return None
        matter = self._pick(
            "matters",
            lambda r: r.data.get("status") in _LIVE and self._custom(r, field, "value_string") in _STAGE_NEXT,
        )
        if matter is None:
            return None
        stage = self.random.choice(_STAGE_NEXT[self._custom(matter, field, "value_string")])
        self._set_custom(matter, field, "value_string", stage)
        return f"matter {matter.id} Case Stage -> {stage}"

    def _statute(self) -> str | None:
        """Calendar a Statute of Limitations on a live matter that has none."""
        field = self._matter_field("Statute of Limitations")
        if field is None:
            return None
        matter = self._pick(
            "matters",
            lambda r: r.data.get("status") in _LIVE and self._custom(r, field, "value_date_time") is None,
        )
        if matter is None:
            return None
        now = self.state.clock.now().replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        day = format_date_value(now + timedelta(days=self.random.randint(180, 3 * 365)))
        self._set_custom(matter, field, "value_date_time", day)
        return f"matter {matter.id} Statute of Limitations -> {day}"

    def _conflict_check(self) -> str | None:
        """Tick Conflict Check on a live matter where it is not ticked yet."""
        field = self._matter_field("Conflict Check")
        if field is None:
            return None
        matter = self._pick(
            "matters",
            lambda r: r.data.get("status") in _LIVE and self._custom(r, field, "value_boolean") is not True,
        )
        if matter is None:
            return None
        self._set_custom(matter, field, "value_boolean", True)
        return f"matter {matter.id} Conflict Check -> True"

    def _delete_record(self) -> str | None:
        """Delete a completed task or a note, as someone tidying up a matter does."""
        resource = self.random.choice(("tasks", "notes"))
        where: Callable[[Row], bool] = (
            (lambda r: r.data.get("status") == "Completed") if resource == "tasks" else (lambda _r: True)
        )
        row = self._pick(resource, where)
        if row is None:
            return None
        self.state.records.delete(resource, row.id)
        return f"{resource.removesuffix('s')} {row.id} deleted"
