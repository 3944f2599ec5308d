"""A read-only PracticePanther list endpoint over a large, fixed set of records, at O(page) per request.

The sandbox evaluates a listing over the whole table on every request (render, filter, sort), which
is right for a simulator of a few thousand records and makes a 100,000-record priming measure the
simulator instead of the worker (a page costs ~1.5 s there at that size). A real PracticePanther
answers from an index. This server does too: records are made and rendered by the sandbox's own
code (so they have exactly the sandbox's shape), sorted once by ``(updated_at, id)``, encoded once,
and each request is a binary search plus a slice.

It answers what the poller asks while priming and polling one resource, and what a reconcile
asks (every id, then a GET of each missing one):

``GET /api/v2/<resource>?$filter=updated_at ge <timestamp>&$orderby=updated_at,id&$top=&$skip=``
``GET /api/v2/<resource>?$select=id&$top=&$skip=`` (400 once ``refuse_select`` is set)
``GET /api/v2/<resource>/<id>`` (404 for a record :meth:`BulkListing.delete` removed)

with any bearer token (the benchmark stores a token set beforehand, so the worker never needs the
OAuth endpoints). Everything else is 404. Requests are counted.
"""

from __future__ import annotations

import bisect
import json
import random
import re
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from worker.polling.snapshots import parse_revision, revision_text
from worker.practicepanther import resources
from worker.sandbox import SandboxConfig
from worker.sandbox.state import SandboxState

_FILTER = re.compile(r"^\s*updated_at\s+ge\s+(\S+)\s*$")
MAX_PAGE_SIZE = 5000


def make_records(resource: str, count: int, *, spread_seconds: float = 86_400.0) -> list[dict[str, Any]]:
    """``count`` records of ``resource`` created through the sandbox (validation, defaults, rendering).

    Their ``updated_at`` values spread evenly over the ``spread_seconds`` before now, several
    records sharing each millisecond now and then as on a busy account. Matters look like the
    sandbox's seeded ones (:mod:`worker.sandbox.seed`), so state bytes per record are measured on
    what an account really holds: a client account each (about three matters per account), one or
    two of eight users, dates, rate, tags and six custom fields.
    """
    state = SandboxState(SandboxConfig(seed=None))
    now = state.clock.now()
    step = spread_seconds / max(count, 1)
    out: list[dict[str, Any]] = []
    with state.db.lock:
        body = _body_for(resource, _Firm(state, count, now - timedelta(seconds=spread_seconds + 86_400)))
        for index in range(count):
            at = now - timedelta(seconds=spread_seconds - index * step)
            row = state.records.create(resource, body(index), at=at, trusted=True)
            out.append(dict(state.records.render(resource, row)))
    return out


#: The matter custom fields a firm keeps (label, value_type, dropdown options).
MATTER_FIELDS = (
    ("Case Stage", "DropDownList", ("Intake", "Discovery", "Mediation", "Trial", "Settlement", "Closed")),
    ("Statute of Limitations", "Date", ()),
    ("Referral Source", "TextBox", ()),
    ("Contingency %", "Number", ()),
    ("Conflict Check", "Checkbox", ()),
    ("Opposing Counsel", "Contact", ()),
)
_REFERRALS = ("Web search", "Former client", "Bar referral", "Billboard", "Friend", "Radio ad")
_USERS = ("Jordan Reyes", "Priya Shah", "Marcus Lee", "Dana Whitfield", "Sam Ortiz", "Lena Brooks",
          "Omar Haddad", "Grace Kim")  # fmt: skip


class _Firm:
    """The records a matter points at: users, client accounts, opposing counsel, custom fields."""

    def __init__(self, state: SandboxState, matters: int, at: datetime) -> None:
        self.random = random.Random(16)
        records = state.records

        def create(kind: str, body: dict[str, Any]) -> str:
            return records.create(kind, body, at=at, trusted=True).id

        self.users = [
            create("users", {"first_name": n.split()[0], "last_name": n.split()[1], "is_active": True,
                             "email": n.lower().replace(" ", ".") + "@reyes-law.example"})
            for n in _USERS
        ]  # fmt: skip
        self.fields = {
            label: create("custom_fields", {"label": label, "value_type": kind, "scope": "matter",
                                            "dropdown_list_values": ", ".join(options) or None})
            for label, kind, options in MATTER_FIELDS
        }  # fmt: skip
        self.accounts = [create("accounts", self._client(i)) for i in range(max(matters // 3, 1))]
        firms = [create("accounts", {"company_name": f"{n} & Partners LLP"}) for n in _LAST]
        self.counsel = [
            create("contacts", {**self._person(i), "account_ref": {"id": firms[i % len(firms)]}})
            for i in range(max(matters // 50, 1))
        ]

    def _person(self, index: int) -> dict[str, Any]:
        first, last = self.random.choice(_FIRST), self.random.choice(_LAST)
        if index % 7 == 0:
            last = f"{last}-{self.random.choice(_LAST)}"
        return {"first_name": first, "last_name": last, "email": f"{first}.{last}{index}@example.com".lower()}

    def _client(self, index: int) -> dict[str, Any]:
        """A client account: a company, or a person (named directly: creating a primary contact
        per account makes the sandbox re-index its contacts every time, quadratic at 30,000)."""
        if index % 3 == 0:
            return {
                "company_name": f"{self.random.choice(_LAST)} {self.random.choice(_COMPANY_KINDS)} {index}"
            }
        return {"company_name": f"{self.random.choice(_FIRST)} {self.random.choice(_LAST)}"}

    def custom_values(self, index: int) -> list[dict[str, Any]]:
        pick = self.random
        stage = MATTER_FIELDS[0][2][index % 6]
        values: list[tuple[str, str, Any]] = [
            ("Case Stage", "value_string", stage),
            ("Statute of Limitations", "value_date_time", f"{2026 + index % 3}-{1 + index % 12:02d}-"
                                                          f"{1 + index % 28:02d}T00:00:00"),
            ("Referral Source", "value_string", pick.choice(_REFERRALS)),
            ("Contingency %", "value_number", pick.choice((25, 30, 33.3, 40))),
            ("Conflict Check", "value_boolean", index % 9 != 0),
            ("Opposing Counsel", "contact_ref", {"id": pick.choice(self.counsel)}),
        ]  # fmt: skip
        return [{"custom_field_ref": {"id": self.fields[name]}, slot: value} for name, slot, value in values]


_FIRST = ("Maria", "James", "Ana", "Robert", "Luis", "Karen", "David", "Sofia", "Michael", "Elena",
          "Carlos", "Linda", "Jose", "Patricia", "Daniel", "Camila")  # fmt: skip
_LAST = ("Garcia", "Smith", "Rodriguez", "Johnson", "Martinez", "Brown", "Hernandez", "Davis",
         "Lopez", "Miller", "Gonzalez", "Wilson", "Perez", "Anderson", "Sanchez", "Thomas")  # fmt: skip
_COMPANY_KINDS = ("Marine Supply LLC", "Holdings Inc", "Construction Co", "Realty Group", "Logistics LLC")
_TAGS = ("Litigation", "Transactional", "Urgent", "Contingency")
_KINDS = ("Contract Dispute", "Personal Injury", "Probate", "Divorce", "Real Estate Closing", "Estate Plan")


def _body_for(resource: str, firm: _Firm) -> Callable[[int], dict[str, Any]]:
    statuses = ("Open", "Pending", "Closed", "Archived")
    if resource == "matters":

        def matter(i: int) -> dict[str, Any]:
            pick = firm.random
            opened = datetime(2024, 1, 1) + timedelta(days=i % 700)
            closed = i % 4 >= 2
            return {
                "name": pick.choice(_KINDS),
                "status": statuses[i % 4],
                "account_ref": {"id": firm.accounts[i // 3 % len(firm.accounts)]},
                "open_date": opened.isoformat(),
                "close_date": (opened + timedelta(days=90 + i % 200)).isoformat() if closed else None,
                "statute_of_limitation_date": (opened + timedelta(days=730)).isoformat() if i % 3 else None,
                "rate": pick.choice(("Hourly", "Flat", "Contingency")),
                "notes": "Opened from the intake form." if i % 3 == 0 else None,
                "tags": [t for t in _TAGS if pick.random() < 0.25],
                "assigned_to_users": [{"id": u} for u in pick.sample(firm.users, pick.choice((1, 1, 2)))],
                "custom_field_values": firm.custom_values(i),
            }

        return matter
    if resource in ("tasks", "notes"):
        return lambda i: {"subject": f"Follow up {i}", "description": "Call the client about next steps."}
    raise ValueError(f"the bulk listing benchmark makes matters, tasks or notes, not {resource!r}")


class BulkListing:
    """The sorted, pre-encoded records of one resource and the page logic over them."""

    def __init__(self, resource: str, records: list[dict[str, Any]]) -> None:
        self.resource = resources.get(resource)

        def order(record: dict[str, Any]) -> tuple[str, str]:
            stamp = parse_revision(record.get("updated_at")) or datetime.min.replace(tzinfo=UTC)
            return revision_text(stamp), str(record.get("id"))

        ordered = sorted(records, key=order)
        self.keys = [order(r)[0] for r in ordered]
        self.ids = [str(r.get("id")) for r in ordered]
        self.encoded = [json.dumps(r, separators=(",", ":")).encode() for r in ordered]
        self.by_id = dict(zip(self.ids, self.encoded, strict=True))
        self.refuse_select = False

    def __len__(self) -> int:
        return len(self.encoded)

    def delete(self, record_ids: set[str]) -> None:
        """Records gone from the listing and from GET (a deletion in PracticePanther)."""
        kept = [i for i, rid in enumerate(self.ids) if rid not in record_ids]
        self.keys = [self.keys[i] for i in kept]
        self.ids = [self.ids[i] for i in kept]
        self.encoded = [self.encoded[i] for i in kept]
        for rid in record_ids:
            self.by_id.pop(rid, None)

    def record(self, record_id: str) -> bytes | None:
        return self.by_id.get(record_id)

    def page(self, query: dict[str, str]) -> bytes:
        start = 0
        raw_filter = query.get("$filter")
        if raw_filter:
            match = _FILTER.match(raw_filter)
            if match is None:
                raise ValueError(f"unsupported $filter {raw_filter!r}")
            bound = parse_revision(match.group(1))
            if bound is None:
                raise ValueError(f"bad timestamp in $filter {raw_filter!r}")
            start = bisect.bisect_left(self.keys, revision_text(bound))
        skip = int(query.get("$skip") or 0)
        top = min(int(query.get("$top") or MAX_PAGE_SIZE), MAX_PAGE_SIZE)
        first = start + skip
        select = query.get("$select")
        if select is not None:
            if self.refuse_select or select != "id":
                raise ValueError("The query specified in the URI is not valid. $select is not supported.")
            ids = self.ids[first : first + top]
            return json.dumps([{"id": rid} for rid in ids], separators=(",", ":")).encode()
        return b"[" + b",".join(self.encoded[first : first + top]) + b"]"


class BulkListingServer:
    """Serves one :class:`BulkListing` on 127.0.0.1 (free port) from a thread; a context manager."""

    def __init__(self, listing: BulkListing) -> None:
        self.listing = listing
        self.requests = 0
        self._lock = threading.Lock()
        server = self
        path = listing.resource.path

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                with server._lock:
                    server.requests += 1
                if not self.headers.get("Authorization", "").startswith("Bearer "):
                    self._send(401, b'{"message":"no"}')
                    return
                if parts.path.startswith(path + "/"):
                    found = server.listing.record(parts.path[len(path) + 1 :].lower())
                    self._send(200 if found else 404, found or b'{"message":"No record found."}')
                    return
                if parts.path != path:
                    self._send(404, b'{"message":"no"}')
                    return
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                try:
                    body = server.listing.page(query)
                except ValueError as exc:
                    self._send(400, json.dumps({"message": str(exc)}).encode())
                    return
                self._send(200, body)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def server_bind(self) -> None:
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                super().server_bind()

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> BulkListingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
