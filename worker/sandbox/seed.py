"""Deterministic seed data: a small law firm with a few months of history.

The same seed always gives identical data, ids and timestamps included: every random choice
comes from ``random.Random(seed)`` and every timestamp is an offset before ``SEED_ANCHOR``
(a fixed moment in the past, so anything written later is newer than all seed data). With
``seed=None`` the account is empty apart from the API user that ``/users/me`` returns.

What a seeded firm has: 5 users (the API user is the managing partner), billing items, expense
categories, bank accounts (operating, trust, credit card), custom fields for companies, matters
and contacts (:data:`CUSTOM_FIELDS`, with values on matters and primary contacts), about two
dozen clients (people and companies, each with a primary contact, some
with more), matters in every status, tasks, time entries, expenses, flat fees, events, notes,
call logs, emails, invoices with line items, payments, relationships, files and messages. Tags
are used on accounts, matters and activities, so the ``/tags/*`` lists are populated.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.sandbox.clock import format_date_value
from worker.sandbox.records import API_USER_ID, Records
from worker.sandbox.store import Row

SEED_ANCHOR = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
HISTORY_DAYS = 180

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "Lucas",
    "Mia", "Mateo", "Amelia", "Benjamin", "Harper", "Daniel", "Evelyn", "Henry", "Luna", "Samuel",
)  # fmt: skip
LAST_NAMES = (
    "Garcia", "Smith", "Johnson", "Nguyen", "Patel", "Brown", "Martinez", "O'Brien", "Kowalski",
    "Rossi", "Cohen", "Okafor", "Silva", "Schmidt", "Dubois", "Kim", "Haddad", "Murphy",
)  # fmt: skip
COMPANIES = (
    "Biscayne Marine Supply LLC", "Coral Gables Dental Group", "Sunrise Logistics Inc.",
    "Everglades Organic Farms", "Palmetto Property Holdings", "Key Largo Dive Co.",
    "Brickell Tech Partners", "Wynwood Arts Collective",
)  # fmt: skip
MATTER_KINDS = (
    "Personal Injury", "Divorce", "Estate Planning", "Real Estate Closing", "Contract Dispute",
    "Employment Claim", "Trademark Registration", "Probate", "Landlord-Tenant", "DUI Defense",
    "Business Formation", "Immigration Petition",
)  # fmt: skip
TASK_SUBJECTS = (
    "Draft engagement letter", "Request medical records", "File motion to dismiss",
    "Prepare discovery responses", "Schedule deposition", "Review settlement offer",
    "Send invoice reminder", "Prepare closing documents", "Call client with update",
    "Calendar statute of limitations", "Collect signed retainer", "Research case law",
)  # fmt: skip
WORK_DESCRIPTIONS = (
    "Telephone conference with client", "Drafted correspondence to opposing counsel",
    "Reviewed and revised agreement", "Legal research", "Prepared for hearing",
    "Attended mediation", "Reviewed discovery production", "Drafted pleading",
    "Email exchange with client regarding next steps", "Court appearance",
)  # fmt: skip
ITEMS = (
    ("Attorney Time", "ATT", 350.0),
    ("Paralegal Time", "PAR", 150.0),
    ("Court Appearance", "CRT", 450.0),
    ("Consultation", "CON", 200.0),
    ("Document Preparation", "DOC", 250.0),
    ("Flat Fee - Will Package", "WILL", 1500.0),
)
EXPENSE_CATEGORIES = ("Filing Fees", "Courier", "Travel", "Copies", "Expert Witness")
BANK_ACCOUNTS = (
    ("Operating", "Firm Operating Account"),
    ("Trust", "IOLTA Trust Account"),
    ("CreditCard", "Firm Visa"),
)
ACCOUNT_TAGS = ("VIP", "Referral", "Corporate", "Pro Bono")
MATTER_TAGS = ("Litigation", "Transactional", "Urgent", "Contingency")
ACTIVITY_TAGS = ("Follow-up", "Billing", "Court")
CASE_STAGES = ("Intake", "Investigation", "Discovery", "Negotiation", "Settlement", "Trial", "Closed")
REFERRAL_SOURCES = ("Google search", "Former client", "Bar referral", "Friend or family", "Billboard")
LITIGATION = ("Personal Injury", "Contract Dispute", "Employment Claim", "Landlord-Tenant", "DUI Defense")
# (scope, label, value_type, dropdown options). The first five were the original set; the rest
# are drawn from a second random stream (``_Seeder.side``), so adding them changed no other
# seeded id, value or timestamp. Matters and contacts both have a "Referral Source": a dropdown
# on matters (how the case came in), free text on contacts (what the person said).
CUSTOM_FIELDS = (
    ("company", "Industry", "TextBox", None),
    ("matter", "Case Number", "TextBox", None),
    ("matter", "Court Date", "Date", None),
    ("matter", "Referral Source", "DropDownList", "Web, Referral, Advertising"),
    ("contact", "Date of Birth", "Date", None),
)
SIDE_CUSTOM_FIELDS = (
    ("matter", "Case Stage", "DropDownList", ", ".join(CASE_STAGES)),
    ("matter", "Statute of Limitations", "Date", None),
    ("matter", "Contingency %", "Number", None),
    ("matter", "Conflict Check", "Checkbox", None),
    ("matter", "Opposing Counsel", "Contact", None),
    ("contact", "Referral Source", "TextBox", None),
)
USERS = (
    ("Jordan", "Reyes", "jordan.reyes@reyes-law.example"),
    ("Priya", "Shah", "priya.shah@reyes-law.example"),
    ("Marcus", "Lee", "marcus.lee@reyes-law.example"),
    ("Dana", "Whitfield", "dana.whitfield@reyes-law.example"),
)


class _Seeder:
    """Builds one firm; every choice comes from ``self.random``."""

    def __init__(self, records: Records, seed: int) -> None:
        self.records = records
        self.random = random.Random(seed)
        # Later additions draw from here, so the original stream (and all it made) stays as it was.
        self.side = random.Random(f"ppw-sandbox-side-{seed}")

    # -- helpers --------------------------------------------------------------------------
    def uid(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def moment(self, earliest_days: float = HISTORY_DAYS, latest_days: float = 0.0) -> datetime:
        """A moment between ``earliest_days`` and ``latest_days`` before the anchor, to the ms."""
        seconds = self.random.uniform(latest_days * 86400, earliest_days * 86400)
        return SEED_ANCHOR - timedelta(milliseconds=int(seconds * 1000))

    def after(self, start: datetime, max_days: float = 20.0) -> datetime:
        """A moment after ``start`` but not after the anchor."""
        end = min(SEED_ANCHOR, start + timedelta(days=max_days))
        span = max(0, int((end - start).total_seconds() * 1000))
        return start + timedelta(milliseconds=self.random.randint(0, span))

    def day(self, moment: datetime, shift_days: int = 0) -> str:
        value = (moment + timedelta(days=shift_days)).replace(hour=0, minute=0, second=0, microsecond=0)
        return format_date_value(value)

    def create(self, resource: str, body: dict[str, Any], at: datetime, **kwargs: Any) -> Row:
        row = self.records.create(resource, body, at=at, trusted=True, **kwargs)
        if self.random.random() < 0.35:
            self.records.db.touch(resource, row, self.after(at))
        return row

    def some(self, rows: list[Row], low: int, high: int) -> list[Row]:
        return self.random.sample(rows, min(len(rows), self.random.randint(low, high)))

    # -- the firm -------------------------------------------------------------------------
    def run(self) -> None:
        start = SEED_ANCHOR - timedelta(days=HISTORY_DAYS + 30)
        users = [self.records.db.get("users", API_USER_ID)] + [
            self.create("users", {"first_name": f, "last_name": la, "email": e, "is_active": True}, start)
            for f, la, e in USERS
        ]
        self.users = [u for u in users if u is not None]
        self.items = [
            self.create("items", {"name": n, "code": c, "rate": r, "description": n}, start)
            for n, c, r in ITEMS
        ]
        self.categories = [self.create("expense_categories", {"name": n}, start) for n in EXPENSE_CATEGORIES]
        self.banks = [self.create("bank_accounts", {"type": t, "name": n}, start) for t, n in BANK_ACCOUNTS]
        self.custom_fields()
        self.accounts()
        self.matters()
        self.activities()
        self.billing()
        self.extras()

    def custom_fields(self) -> None:
        """The definitions of :data:`CUSTOM_FIELDS` and :data:`SIDE_CUSTOM_FIELDS`, by (scope, label)."""
        start = SEED_ANCHOR - timedelta(days=HISTORY_DAYS + 30)
        self.fields: dict[tuple[str, str], Row] = {}
        for scope, label, value_type, values in CUSTOM_FIELDS:
            body = {"label": label, "value_type": value_type, "dropdown_list_values": values, "scope": scope}
            self.fields[scope, label] = self.create("custom_fields", body, start)
        for scope, label, value_type, values in SIDE_CUSTOM_FIELDS:
            body = {"label": label, "value_type": value_type, "dropdown_list_values": values, "scope": scope}
            self.fields[scope, label] = self.records.create(
                "custom_fields", body, at=start, trusted=True, record_id=self.side_uid()
            )

    def side_uid(self) -> str:
        return str(uuid.UUID(int=self.side.getrandbits(128), version=4))

    def value(self, scope: str, label: str, slot: str, value: Any) -> dict[str, Any]:
        """One ``CustomFieldValue`` entry: ``value`` in ``slot``, the slot the field's type uses."""
        return {"custom_field_ref": {"id": self.fields[scope, label].id}, slot: value}

    def matter_values(self, body: dict[str, Any], opened: datetime, account: Row) -> list[dict[str, Any]]:
        """Case stage, limitation date, contingency share, conflict check and opposing counsel.

        Consistent with the matter: a closed matter's stage is Closed, a pending one's Intake; the
        limitation date repeats ``statute_of_limitation_date`` when the matter has one; only
        contingency matters have a percentage; opposing counsel is a contact of another client.
        """
        side, kind, status = self.side, body["name"], body["status"]
        values: list[dict[str, Any]] = []
        if status in ("Closed", "Archived"):
            stage: str | None = "Closed"
        elif status == "Pending":
            stage = "Intake"
        else:
            stage = side.choices(CASE_STAGES[1:6], (25, 30, 20, 15, 10))[0] if side.random() < 0.9 else None
        if stage is not None:
            values.append(self.value("matter", "Case Stage", "value_string", stage))
        statute = body.get("statute_of_limitation_date")
        if statute is None and kind in LITIGATION and side.random() < 0.5:
            statute = self.day(opened, side.randint(365, 3 * 365))
        if statute is not None:
            values.append(self.value("matter", "Statute of Limitations", "value_date_time", statute))
        if body["rate"] == "Contingency":
            share = side.choice((25.0, 33.3, 40.0))
            values.append(self.value("matter", "Contingency %", "value_number", share))
        if side.random() < 0.85:
            values.append(self.value("matter", "Conflict Check", "value_boolean", side.random() < 0.9))
        counsel = [
            c for c in self.records.db.iter_rows("contacts") if c.extra.get("account_id") != account.id
        ]
        if kind in LITIGATION and counsel and side.random() < 0.6:
            values.append(
                self.value("matter", "Opposing Counsel", "contact_ref", {"id": side.choice(counsel).id})
            )
        return values

    def person(self) -> dict[str, Any]:
        first, last = self.random.choice(FIRST_NAMES), self.random.choice(LAST_NAMES)
        email = f"{first}.{last}@example.com".lower().replace("'", "")
        return {
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone_mobile": f"305-555-{self.random.randint(0, 9999):04d}",
        }

    def accounts(self) -> None:
        self.account_rows: list[Row] = []
        for index in range(24):
            at = self.moment(HISTORY_DAYS, 20)
            body: dict[str, Any] = {"primary_contact": self.person(), "assigned_to_users": []}
            if self.side.random() < 0.6:
                source = self.side.choice(REFERRAL_SOURCES)
                body["primary_contact"]["custom_field_values"] = [
                    self.value("contact", "Referral Source", "value_string", source)
                ]
            if index % 3 == 0:
                company = COMPANIES[(index // 3) % len(COMPANIES)]
                body["company_name"] = company
                body["company_custom_field_values"] = [
                    {
                        "custom_field_ref": {"id": self.fields["company", "Industry"].id},
                        "value_string": "Services",
                    }
                ]
                body["other_contacts"] = [self.person() for _ in range(self.random.randint(0, 2))]
            body["address_city"] = self.random.choice(
                ("Miami", "Coral Gables", "Fort Lauderdale", "Homestead")
            )
            body["address_state"] = "Florida"
            body["address_country"] = "United States"
            body["tags"] = [t for t in ACCOUNT_TAGS if self.random.random() < 0.2]
            body["assigned_to_users"] = [{"id": u.id} for u in self.some(self.users, 1, 2)]
            self.account_rows.append(self.create("accounts", body, at))

    def matters(self) -> None:
        self.matter_rows: list[Row] = []
        for account in self.account_rows:
            for _ in range(self.random.choice((1, 1, 1, 2, 2, 3))):
                at = self.after(account.created, 15)
                status = self.random.choices(("Open", "Pending", "Closed", "Archived"), (60, 15, 20, 5))[0]
                body: dict[str, Any] = {
                    "name": self.random.choice(MATTER_KINDS),
                    "status": status,
                    "account_ref": {"id": account.id},
                    "open_date": self.day(at),
                    "rate": self.random.choice(("Hourly", "Flat", "Contingency")),
                    "tags": [t for t in MATTER_TAGS if self.random.random() < 0.25],
                    "assigned_to_users": [{"id": u.id} for u in self.some(self.users, 1, 2)],
                    "custom_field_values": [
                        {
                            "custom_field_ref": {"id": self.fields["matter", "Case Number"].id},
                            "value_string": f"2025-CA-{self.random.randint(1000, 9999)}",
                        }
                    ],
                }
                if status in ("Closed", "Archived"):
                    body["close_date"] = self.day(self.after(at, 60))
                if self.random.random() < 0.3:
                    body["statute_of_limitation_date"] = self.day(at, 365 * 2)
                body["custom_field_values"] += self.matter_values(body, at, account)
                self.matter_rows.append(self.create("matters", body, at))

    def activities(self) -> None:
        matters = self.matter_rows
        for _ in range(70):
            matter = self.random.choice(matters)
            at = self.after(matter.created, 60)
            body: dict[str, Any] = {
                "subject": self.random.choice(TASK_SUBJECTS),
                "matter_ref": {"id": matter.id},
                "priority": self.random.choice(("Low", "Medium", "High")),
                "status": self.random.choices(("NotCompleted", "InProgress", "Completed"), (50, 15, 35))[0],
                "due_date": self.day(at, self.random.randint(-10, 45)),
                "assigned_to_users": [{"id": u.id} for u in self.some(self.users, 1, 2)],
                "tags": [t for t in ACTIVITY_TAGS if self.random.random() < 0.15],
            }
            self.create("tasks", body, at)
        self.time_entries = []
        for _ in range(150):
            matter = self.random.choice(matters)
            at = self.after(matter.created, 90)
            item = self.random.choice(self.items[:5])
            body = {
                "matter_ref": {"id": matter.id},
                "billed_by_user_ref": {"id": self.random.choice(self.users).id},
                "item_ref": {"id": item.id},
                "date": self.day(at),
                "hours": self.random.choice((0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.2, 1.5, 2.0, 2.5, 4.0)),
                "rate": item.data["rate"],
                "is_billable": self.random.random() < 0.85,
                "is_billed": False,
                "description": self.random.choice(WORK_DESCRIPTIONS),
            }
            self.time_entries.append(self.create("time_entries", body, at))
        for _ in range(25):
            matter = self.random.choice(matters)
            at = self.after(matter.created, 60)
            start = (at + timedelta(days=self.random.randint(1, 30))).replace(
                hour=self.random.randint(9, 16), minute=0, second=0, microsecond=0
            )
            body = {
                "subject": self.random.choice(
                    ("Hearing", "Client meeting", "Deposition", "Mediation", "Closing")
                ),
                "matter_ref": {"id": matter.id},
                "location": self.random.choice(("Office", "Miami-Dade Courthouse", "Zoom")),
                "is_all_day": False,
                "start_date_time": format_date_value(start),
                "end_date_time": format_date_value(start + timedelta(hours=1)),
                "assigned_to_users": [{"id": u.id} for u in self.some(self.users, 1, 2)],
                "tags": [t for t in ACTIVITY_TAGS if self.random.random() < 0.15],
            }
            self.create("events", body, at)
        for _ in range(35):
            matter = self.random.choice(matters)
            at = self.after(matter.created, 90)
            body = {
                "subject": self.random.choice(("Call notes", "Meeting notes", "Strategy", "Intake")),
                "note": self.random.choice(WORK_DESCRIPTIONS),
                "matter_ref": {"id": matter.id},
                "date": self.day(at),
                "assigned_to_users": [{"id": self.random.choice(self.users).id}],
                "tags": [t for t in ACTIVITY_TAGS if self.random.random() < 0.1],
            }
            self.create("notes", body, at)
        for _ in range(15):
            matter = self.random.choice(matters)
            at = self.after(matter.created, 90)
            body = {
                "subject": "Call with client",
                "matter_ref": {"id": matter.id},
                "duration": float(self.random.choice((5, 10, 15, 30))),
                "date": format_date_value(at),
                "call_direction": self.random.choice(("Inbound", "Outbound")),
                "assigned_to_users": [{"id": self.random.choice(self.users).id}],
            }
            self.create("call_logs", body, at)
        for index in range(12):
            matter = self.random.choice(matters)
            at = self.after(matter.created, 90)
            body = {
                "subject": f"Re: {matter.data['name']}",
                "body_text": self.random.choice(WORK_DESCRIPTIONS),
                "matter_ref": {"id": matter.id},
                "date": format_date_value(at),
                "from": {"address": USERS[0][2], "display_name": f"{USERS[0][0]} {USERS[0][1]}"},
                "to": [{"address": "client@example.com", "display_name": "Client"}],
                "external_message_id": f"<seed-{index}@mail.example>",
            }
            self.create("emails", body, at)

    def billing(self) -> None:
        matters = self.matter_rows
        for _ in range(25):
            matter = self.random.choice(matters)
            at = self.after(matter.created, 90)
            qty, price = float(self.random.randint(1, 5)), float(self.random.choice((15, 25, 40, 120, 350)))
            body = {
                "matter_ref": {"id": matter.id},
                "billed_by_user_ref": {"id": self.random.choice(self.users).id},
                "expense_category_ref": {"id": self.random.choice(self.categories).id},
                "date": self.day(at),
                "qty": qty,
                "price": price,
                "is_billable": True,
                "is_billed": False,
                "description": "Disbursement",
            }
            self.create("expenses", body, at)
        for _ in range(10):
            matter = self.random.choice(matters)
            at = self.after(matter.created, 30)
            body = {
                "matter_ref": {"id": matter.id},
                "billed_by_user_ref": {"id": self.random.choice(self.users).id},
                "item_ref": {"id": self.items[5].id},
                "date": self.day(at),
                "qty": 1.0,
                "price": 1500.0,
                "is_billable": True,
                "description": "Will package",
            }
            self.create("flat_fees", body, at)
        self.invoices()

    def invoices(self) -> None:
        by_matter: dict[str, list[Row]] = {}
        for entry in self.time_entries:
            by_matter.setdefault(entry.data["matter_ref"]["id"], []).append(entry)
        matter_ids = sorted(by_matter)[:15]
        operating = self.banks[0]
        for matter_id in matter_ids:
            entries = by_matter[matter_id]
            matter = self.records.db.get("matters", matter_id)
            if matter is None:
                continue
            lines = []
            for entry in entries:
                amount = round(entry.data["hours"] * entry.data["rate"], 2)
                user = self.records.db.get("users", entry.data["billed_by_user_ref"]["id"])
                lines.append(
                    {
                        "quantity": entry.data["hours"],
                        "rate": entry.data["rate"],
                        "discount": 0.0,
                        "subtotal": amount,
                        "total": amount,
                        "date": entry.data["date"],
                        "billed_by": f"{user.data['first_name']} {user.data['last_name']}" if user else "",
                        "item_name": "Attorney Time",
                        "item_description": entry.data["description"],
                    }
                )
            subtotal = round(sum(line["total"] for line in lines), 2)
            at = self.after(max(e.created for e in entries), 10)
            paid = self.random.choice((0.0, 0.0, subtotal, round(subtotal / 2, 2)))
            body = {
                "account_ref": matter.data.get("account_ref"),
                "matter_ref": {"id": matter_id},
                "issue_date": self.day(at),
                "due_date": self.day(at, 30),
                "items_time_entries": lines,
                "items_expenses": [],
                "items_flat_fees": [],
                "subtotal": subtotal,
                "tax": 0.0,
                "discount": 0.0,
                "total": subtotal,
                "total_paid": paid,
                "invoice_type": "Sale",
            }
            self.create("invoices", body, at)
            for entry in entries:
                entry.data["is_billed"] = True
                self.records.db.changed("time_entries", entry)
            if paid and matter.data.get("account_ref"):
                payment = {
                    "account_ref": matter.data["account_ref"],
                    "matter_ref": {"id": matter_id},
                    "date": self.day(at, 5),
                    "total_amount": paid,
                    "unapplied_amount": 0.0,
                    "bank_account": {"id": operating.id},
                    "status": "Success",
                    "payee": "Client",
                    "notes": "Payment received",
                }
                self.create("payments", payment, self.after(at, 10))

    def extras(self) -> None:
        contacts = self.records.db.rows("contacts")
        for _ in range(12):
            contact, matter = self.random.choice(contacts), self.random.choice(self.matter_rows)
            body: dict[str, Any] = {
                "contact_ref": {"id": contact.id},
                "matter_ref": {"id": matter.id},
                "name": self.random.choice(("Opposing Counsel", "Witness", "Spouse", "Expert", "Adjuster")),
            }
            self.create("relationships", body, self.after(matter.created, 30))
        for index in range(10):
            matter = self.random.choice(self.matter_rows)
            content = f"Seed document {index} for {matter.data['name']}\n".encode()
            body = {
                "file_name": f"document-{index + 1}.txt",
                "description": "Scanned correspondence",
                "matter_ref": {"id": matter.id},
                "_content": content,
                "_content_type": "text/plain",
            }
            self.create(
                "files", body, self.after(matter.created, 30), created_by=self.random.choice(self.users).id
            )
        for _ in range(6):
            contact = self.random.choice(contacts)
            at = self.moment(60, 1)
            body = {
                "sender": {"id": self.users[0].id},
                "contact_id": contact.id,
                "contact": {"id": contact.id},
                "account_id": contact.extra.get("account_id"),
                "type": "Text",
                "subject": "Appointment reminder",
                "body": "Reminder: your appointment is tomorrow at 10am.",
                "sent_date": format_date_value(at),
                "sent_by_contact": False,
            }
            self.create("messages", body, at)


def seed_database(records: Records, seed: int | None) -> None:
    """Fill an empty database: the API user always, a whole firm when ``seed`` is an int."""
    records.create(
        "users",
        {
            "first_name": "Alex",
            "last_name": "Morgan",
            "email": "alex.morgan@reyes-law.example",
            "is_active": True,
        },
        at=SEED_ANCHOR - timedelta(days=HISTORY_DAYS + 60),
        trusted=True,
        record_id=API_USER_ID,
    )
    if seed is not None:
        seeder = _Seeder(records, seed)
        default_ids = records.new_id
        records.new_id = seeder.uid
        try:
            seeder.run()
        finally:
            records.new_id = default_ids
