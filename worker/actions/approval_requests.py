"""Approval requests and their decisions in the state store: what the ``approval`` step and the
worker's approval endpoints (:mod:`worker.triggers.approvals`) share.

An approval step stores its *request* before it posts anything (which run and step wait, who may
decide, until when, where the message went), so a retry never asks twice and the endpoints can
check a click against it. A *decision* is written once, with ``set_if_absent``: the first one
wins, whether a Slack button, a link or the step's own timeout, and everyone after it is told
who decided. Keys (under ``ppw:<connection>:``) are ``approval:<step key>`` and
``approval-decision:<step key>``; both live until the timeout plus the run retention.

Links (Teams, email) carry a token signed with ``PPW_APPROVAL_SECRET`` (itsdangerous): the
connection, the step key, the approver it was made for and its expiry, the step's timeout. A link
is one approver's: the decision records who. It works once because the approval is decided once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, Field, ValidationError

from worker.errors import PpwError
from worker.settings import Settings
from worker.state.base import StateStore, key

Via = Literal["slack", "teams", "email"]
Verdict = Literal["approved", "declined"]

#: Button ids of the Slack message; the value carries ``<connection> <step key>``.
APPROVE_ACTION = "ppw_approve"
DECLINE_ACTION = "ppw_decline"
#: Keeps tokens of this feature apart from anything else signed with the same secret.
_SALT = "ppw-approval-link"


class ApprovalRequest(BaseModel):
    """One approval step's request, as stored."""

    connection: str
    key: str
    run_id: str
    rule_id: str
    step_id: str
    via: Via
    approvers: list[str]
    text: str
    due: float
    #: ``due`` as approvers read it, in the firm's time zone
    deadline: str = ""
    created: float
    #: Slack: the channel id and ``ts`` of the message with the buttons
    channel: str | None = None
    ts: str | None = None
    #: Teams/email: the approvers (or webhook) already sent their request, so a retry skips them
    sent: list[str] = Field(default_factory=list)
    posted: bool = False

    def may_decide(self, who: str) -> bool:
        """Whether ``who`` (a Slack user id, an email address) is one of the approvers."""
        return who.strip().lower() in {a.strip().lower() for a in self.approvers}


class Decision(BaseModel):
    """What was decided, by whom (a Slack user id, an email address, ``timeout``), when, how."""

    decision: Verdict
    by: str
    at: float
    via: str
    name: str | None = None
    timed_out: bool = False

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds")

    def summary(self) -> str:
        """``approved by U123 (alice) at 2026-03-02T15:00:00+00:00 via slack``."""
        if self.timed_out:
            return f"timed out at {self.when} (no decision): {self.decision}"
        who = f"{self.by} ({self.name})" if self.name and self.name != self.by else self.by
        return f"{self.decision} by {who} at {self.when} via {self.via}"


@dataclass(frozen=True)
class Link:
    """What a link token says: whose link to which approval, valid until ``expires``."""

    connection: str
    key: str
    approver: str
    expires: float


class BadLink(PpwError, ValueError):
    """A token that is not one of ours (tampered with, cut short, signed with another secret)."""


class Approvals:
    """The requests and decisions of approval steps in ``store``."""

    def __init__(self, store: StateStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    # requests -----------------------------------------------------------------------------------
    def request(self, connection: str, step_key: str) -> ApprovalRequest | None:
        raw = self.store.get(key(connection, "approval", step_key))
        if raw is None:
            return None
        try:
            return ApprovalRequest.model_validate_json(raw)
        except ValidationError:
            return None

    def save(self, request: ApprovalRequest) -> None:
        self.store.set(
            key(request.connection, "approval", request.key), request.model_dump_json(), self._ttl(request)
        )

    # decisions ----------------------------------------------------------------------------------
    def decision(self, connection: str, step_key: str) -> Decision | None:
        raw = self.store.get(key(connection, "approval-decision", step_key))
        return Decision.model_validate_json(raw) if raw is not None else None

    def decide(self, request: ApprovalRequest, decision: Decision) -> tuple[bool, Decision]:
        """Record ``decision`` unless one was made already: (whether this one won, the standing one)."""
        where = key(request.connection, "approval-decision", request.key)
        if self.store.set_if_absent(where, decision.model_dump_json(), self._ttl(request)):
            return True, decision
        standing = self.decision(request.connection, request.key)
        return False, standing if standing is not None else decision

    def _ttl(self, request: ApprovalRequest) -> float:
        return max(request.due - time.time(), 0.0) + self.settings.run_retention_days * 86400.0 + 3600.0

    # links --------------------------------------------------------------------------------------
    def _serializer(self) -> URLSafeSerializer:
        secret = self.settings.approval_secret
        if secret is None or len(secret.get_secret_value()) < 16:
            raise ValueError("approval links need PPW_APPROVAL_SECRET (at least 16 characters)")
        return URLSafeSerializer(secret.get_secret_value(), salt=_SALT)

    def link(self, request: ApprovalRequest, approver: str) -> str:
        """``<PPW_PUBLIC_URL>/approvals/<token>``: ``approver``'s link, expiring with the request."""
        base = self.settings.public_url.rstrip("/")
        if not base:
            raise ValueError(
                "approval links need PPW_PUBLIC_URL (the worker's address as approvers reach it)"
            )
        payload = {"c": request.connection, "k": request.key, "a": approver, "e": int(request.due)}
        return f"{base}/approvals/{self._serializer().dumps(payload)}"

    def read_link(self, token: str) -> Link:
        """The link ``token`` stands for; :class:`BadLink` when its signature does not hold."""
        serializer = self._serializer()
        try:
            payload = serializer.loads(token)
            return Link(str(payload["c"]), str(payload["k"]), str(payload["a"]), float(payload["e"]))
        except (BadSignature, KeyError, TypeError, ValueError, json.JSONDecodeError):
            raise BadLink(
                "this approval link is not valid (it may have been cut short when copied)"
            ) from None


def slack_value(request: ApprovalRequest) -> str:
    """The value of the Slack buttons: which approval (Slack's signature vouches for the click)."""
    return f"{request.connection} {request.key}"


def read_slack_value(value: str) -> tuple[str, str] | None:
    connection, _, step_key = value.partition(" ")
    return (connection, step_key) if connection and step_key else None
