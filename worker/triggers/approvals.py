"""The worker's approval endpoints: Slack's button clicks and the one-time links of Teams and email.

``POST /slack/interactivity``
    Where the Slack app's *Interactivity Request URL* points. Each request is checked with
    ``PPW_SLACK_SIGNING_SECRET`` the way Slack signs (``X-Slack-Signature: v0=<hex HMAC-SHA256 of
    "v0:<X-Slack-Request-Timestamp>:<raw body>">``), and refused (401) when the signature does not
    match or the timestamp is more than five minutes from our clock (a replayed click). A click
    of someone who is not an approver is answered to that person alone (an ephemeral message
    through ``response_url``) and decides nothing.
``GET /approvals/<token>``
    The page of an approval link: the request, who it is for, and Approve / Decline buttons.
    Opening it decides nothing (mail scanners and link previews open links).
``POST /approvals/<token>``
    The button: ``decision=approve|decline``. The token is signed (``PPW_APPROVAL_SECRET``) and
    names its approver, so the decision records who; it expires with the step's timeout.

Both store the first decision only (``set_if_absent``): a second click, Slack's retry of the
same click, or a link used again is told who decided and when. The winner makes the waiting run
due now (``wake``, under the run's lease), so the timer pump wakes it at its next look; a fresh
worker after a restart resumes it the same way, since nothing of the wait is in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import parse_qs

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from worker.actions.approval import show_on_slack
from worker.actions.approval_requests import (
    APPROVE_ACTION,
    DECLINE_ACTION,
    ApprovalRequest,
    Approvals,
    BadLink,
    Decision,
    read_slack_value,
)
from worker.actions.outbound import Outbound, TransportFailure
from worker.settings import Settings
from worker.state.base import StateError, StateStore

log = logging.getLogger(__name__)

#: Slack's own rule: a request whose timestamp is further than this from now is refused.
SLACK_WINDOW = 300.0
#: How long the winner keeps trying to wake a run a worker is busy with (storing its wait).
WAKE_PATIENCE = 2.5
#: The largest interactivity body read (Slack's payloads are a few kilobytes).
MAX_BODY = 64 * 1024

Wake = Callable[[str, str], bool]
Clock = Callable[[], float]


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=<hex>``: Slack's signature of ``body`` sent at ``timestamp``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def check_slack(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str | None:
    """Why a request is not from Slack (None: it is): its signature or its freshness."""
    timestamp = headers.get("x-slack-request-timestamp", "").strip()
    given = headers.get("x-slack-signature", "").strip()
    if not timestamp or not given:
        return "missing X-Slack-Signature or X-Slack-Request-Timestamp"
    if not timestamp.isdigit():
        return "X-Slack-Request-Timestamp is not a Unix time"
    away = abs(now - int(timestamp))
    if away > SLACK_WINDOW:
        return f"X-Slack-Request-Timestamp is {away:.0f}s away (window {SLACK_WINDOW:g}s): a replay?"
    if not hmac.compare_digest(given.encode(), slack_signature(secret, timestamp, body).encode()):
        return "X-Slack-Signature does not match the body"
    return None


@dataclass(frozen=True)
class Answer:
    """The outcome of one attempt to decide, and what to tell the person."""

    status: int
    title: str
    message: str
    decided: bool = False


class ApprovalDesk:
    """The approval endpoints of one worker.

    Parameters
    ----------
    settings:
        Secrets (signing secret, link secret, bot token) and the Slack API's address.
    store:
        Holds the requests and decisions.
    wake:
        ``wake(connection, run_id)``: make the waiting run due now; False while a worker holds it.
    clock:
        Unix time now (tests move it).
    """

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        wake: Wake,
        *,
        http: Outbound | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.approvals = Approvals(store, settings)
        self.wake = wake
        self.http = http or Outbound(settings.http_timeout)
        self.clock = clock

    def routes(self) -> list[BaseRoute]:
        """The routes to mount on the worker's HTTP server (``HealthServer(routes=...)``)."""
        return [
            Route("/slack/interactivity", self.slack, methods=["POST"]),
            Route("/approvals/{token}", self.link, methods=["GET", "POST"]),
        ]

    # Slack --------------------------------------------------------------------------------------
    async def slack(self, request: Request) -> Response:
        secret = self.settings.slack_signing_secret
        if secret is None or not secret.get_secret_value():
            return _json(
                503, "not_configured", "set PPW_SLACK_SIGNING_SECRET to take Slack's approval clicks"
            )
        body = await request.body()
        if len(body) > MAX_BODY:
            return _json(413, "too_large", f"more than {MAX_BODY} bytes")
        refused = check_slack(secret.get_secret_value(), request.headers, body, self.clock())
        if refused is not None:
            log.warning("Slack interactivity request refused: %s", refused)
            return _json(401, "bad_signature", refused)
        try:
            payload = json.loads(parse_qs(body.decode()).get("payload", [""])[0])
            action = payload["actions"][0]
            user = payload["user"]
        except (ValueError, KeyError, IndexError, TypeError):
            return _json(400, "bad_payload", "expected a block_actions payload with one action")
        if action.get("action_id") not in (APPROVE_ACTION, DECLINE_ACTION):
            return Response(status_code=200)  # another button of the app: not ours to answer
        try:
            answer = await anyio.to_thread.run_sync(self._slack_click, payload, action, user)
        except StateError as exc:
            log.warning("could not read an approval request: %s", exc)
            return _json(503, "unavailable", "the worker cannot read approvals right now; try again shortly")
        return JSONResponse({"ok": answer.decided, "text": answer.message}, status_code=answer.status)

    def _slack_click(self, payload: dict[str, Any], action: dict[str, Any], user: dict[str, Any]) -> Answer:
        which = read_slack_value(str(action.get("value", "")))
        request = self.approvals.request(*which) if which else None
        if request is None:
            answer = Answer(200, "Unknown approval", "This approval request is no longer known (it expired).")
        else:
            who = str(user.get("id", ""))
            name = str(user.get("username") or user.get("name") or "") or None
            verdict = "approved" if action["action_id"] == APPROVE_ACTION else "declined"
            if not request.may_decide(who):
                approvers = ", ".join(f"<@{a}>" for a in request.approvers)
                answer = Answer(200, "Not an approver", f"Only {approvers} may decide this request.")
            else:
                answer = self._decide(
                    request, Decision(decision=verdict, by=who, name=name, at=self.clock(), via="slack")
                )
        if not answer.decided:
            self._tell(payload, answer.message)
        return answer

    def _tell(self, payload: dict[str, Any], text: str) -> None:
        """Tell the clicker alone (Slack's ``response_url``, ephemeral) why nothing happened."""
        url = payload.get("response_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return
        try:
            self.http.post(url, json={"response_type": "ephemeral", "replace_original": False, "text": text})
        except TransportFailure as exc:
            log.warning("could not answer the Slack click through response_url: %s", exc)

    # links --------------------------------------------------------------------------------------
    async def link(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            if request.method == "GET":
                answer, approval = await anyio.to_thread.run_sync(self._look, token)
                return _page(answer, approval, token if answer.status == 200 and approval else None)
            body = await request.body()
            if len(body) > MAX_BODY:
                return _page(Answer(413, "Too large", "That is not an answer to an approval."), None, None)
            choice = (parse_qs(body.decode(errors="replace")).get("decision") or [""])[0]
            if choice not in ("approve", "decline"):
                return _page(Answer(400, "Choose", "Press Approve or Decline."), None, None)
            answer, _ = await anyio.to_thread.run_sync(self._use, token, choice)
            return _page(answer, None, None)
        except StateError as exc:
            log.warning("could not read an approval request: %s", exc)
            return _page(Answer(503, "Try again", "The worker cannot read approvals right now."), None, None)

    def _open(self, token: str) -> tuple[Answer | None, ApprovalRequest | None, str]:
        """The request a link stands for, or why it cannot be used (bad, unknown, decided, expired)."""
        try:
            found = self.approvals.read_link(token)
        except BadLink as exc:
            return Answer(404, "Invalid link", str(exc)), None, ""
        except ValueError as exc:  # no PPW_APPROVAL_SECRET here
            return Answer(503, "Not configured", str(exc)), None, ""
        request = self.approvals.request(found.connection, found.key)
        if request is None or not request.may_decide(found.approver):
            return Answer(410, "Unknown approval", "This approval request is no longer known."), None, ""
        standing = self.approvals.decision(found.connection, found.key)
        if standing is not None:
            return (
                Answer(409, "Already decided", f"This request was already {standing.summary()}."),
                request,
                "",
            )
        if self.clock() >= min(found.expires, request.due):
            return (
                Answer(410, "Link expired", f"This link expired at {request.deadline or found.expires}."),
                request,
                "",
            )
        return None, request, found.approver

    def _look(self, token: str) -> tuple[Answer, ApprovalRequest | None]:
        refused, request, approver = self._open(token)
        if refused is not None:
            return refused, None
        assert request is not None
        return Answer(200, "Approval requested", f"For {approver}. Decide by {request.deadline}."), request

    def _use(self, token: str, choice: str) -> tuple[Answer, None]:
        refused, request, approver = self._open(token)
        if refused is not None:
            return refused, None
        assert request is not None
        verdict = "approved" if choice == "approve" else "declined"
        decision = Decision(decision=verdict, by=approver, at=self.clock(), via=request.via)
        return self._decide(request, decision), None

    # deciding -----------------------------------------------------------------------------------
    def _decide(self, request: ApprovalRequest, decision: Decision) -> Answer:
        """Store ``decision`` unless one was made; the winner wakes the run and shows it on Slack."""
        try:
            won, standing = self.approvals.decide(request, decision)
        except StateError as exc:
            log.warning("could not store an approval decision: %s", exc)
            return Answer(
                503, "Try again", "The worker cannot record decisions right now; try again shortly."
            )
        if not won:
            return Answer(409, "Already decided", f"This request was already {standing.summary()}.")
        log.info("approval of run %s step %s %s", request.run_id, request.step_id, decision.summary())
        self._wake(request)
        if request.via == "slack":
            show_on_slack(self.settings, self.http, request, decision)
        return Answer(200, decision.decision.capitalize(), f"Thank you: {decision.summary()}.", decided=True)

    def _wake(self, request: ApprovalRequest) -> None:
        """Make the waiting run due now; a worker holding it (still storing its wait) is given a
        moment. If it keeps it longer, the run reads the decision when it next runs anyway."""
        deadline = time.monotonic() + WAKE_PATIENCE
        while True:
            try:
                if self.wake(request.connection, request.run_id):
                    return
            except StateError as exc:
                log.warning("could not wake run %s after its approval: %s", request.run_id, exc)
                return
            if time.monotonic() >= deadline:
                log.warning("run %s was busy; it reads its approval when it next wakes", request.run_id)
                return
            time.sleep(0.05)


def _json(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def _page(answer: Answer, request: ApprovalRequest | None, token: str | None) -> HTMLResponse:
    """A small page: the request and its buttons (a usable link), or what became of it."""
    text = f"<blockquote>{escape(request.text)}</blockquote>" if request is not None else ""
    buttons = ""
    if token is not None:
        buttons = (
            '<form method="post">'
            '<button name="decision" value="approve">Approve</button> '
            '<button name="decision" value="decline">Decline</button>'
            "</form>"
        )
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{escape(answer.title)} · ppw</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}"
        "button{font-size:1rem;padding:.5rem 1.5rem;margin-right:.5rem}</style></head><body>"
        f"<h1>{escape(answer.title)}</h1>{text}<p>{escape(answer.message)}</p>{buttons}</body></html>"
    )
    return HTMLResponse(html, status_code=answer.status, headers=_HEADERS)


def approval_routes(desk: ApprovalDesk | None) -> Sequence[BaseRoute]:
    """The routes of ``desk`` (none without one), for ``HealthServer(routes=...)``."""
    return desk.routes() if desk is not None else ()
