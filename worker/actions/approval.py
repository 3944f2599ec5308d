"""``approval``: ask named people to approve, wait for their answer, go on, end or branch.

The step posts a request and then waits exactly as ``wait`` does (it raises
:class:`~worker.actions.errors.WaitUntil` with its timeout; the run is stored, nothing is held in
memory), until a decision or the timeout:

- ``via: slack``: a message to ``channel`` through the bot token (``chat.postMessage``) with
  Approve / Decline buttons; Slack sends the click to ``<PPW_PUBLIC_URL>/slack/interactivity``,
  checked with ``PPW_SLACK_SIGNING_SECRET``; ``approvers`` are Slack user ids (``U…``);
- ``via: teams``: an Adaptive Card through the Workflows webhook ``webhook`` with one link per
  approver (``approvers`` are email addresses);
- ``via: email``: one message per approver (``PPW_SMTP_URL``) with that approver's own link.

Links are ``<PPW_PUBLIC_URL>/approvals/<token>``, signed with ``PPW_APPROVAL_SECRET``, expiring at
the timeout; opening one shows the request with Approve / Decline buttons (opening never decides:
mail scanners open links), the button decides. The endpoints (:mod:`worker.triggers.approvals`)
store the first decision (:mod:`worker.actions.approval_requests`) and make the waiting run due
now; woken, this step reads the decision and:

- ``approved``: the run continues; ``steps.<id>`` has ``decision``, ``by``, ``at``, ``via``;
- ``declined``: with ``on_decline: end`` (the default) the run ends as ``cancelled`` with the
  decision as its reason; with ``on_decline: continue`` it goes on, and later steps choose with
  ``if: steps.<id>.declined``; ``on_decline:`` as a list of steps runs those instead of the rest
  of the rule (the rule model flattens them into guarded steps when the rule loads, see
  :mod:`worker.rules.branches`; here it is ``continue``);
- no decision by ``timeout`` (``"2 days"``, ``"3 business days"``: the firm calendar's durations):
  ``on_timeout: decline`` (the default, then ``on_decline`` applies), ``approve``, or ``cancel``
  (the run ends as ``cancelled`` whatever ``on_decline`` says).

The decision, who made it, when and how go into the run history (the step's response, or the
run's reason when it ends there).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from html import escape
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from worker.actions.approval_requests import (
    APPROVE_ACTION,
    DECLINE_ACTION,
    ApprovalRequest,
    Approvals,
    Decision,
    slack_value,
)
from worker.actions.base import StepContext, StepResult, StepType
from worker.actions.errors import CancelRun, PermanentStepError, WaitUntil
from worker.actions.mail import EmailSend
from worker.actions.outbound import Outbound, TransportFailure
from worker.actions.params import EmailSendParams, Params, SecretName, TeamsPostParams, email_addresses
from worker.actions.slack import web_api
from worker.actions.teams import TeamsPost
from worker.calendar import Calendar, CalendarError, parse_duration
from worker.settings import Settings

log = logging.getLogger(__name__)

#: Within this of the timeout, a wake is the timeout (clocks of two hosts), as for ``wait``.
EARLY = 0.5
_SLACK_USER = r"^[UW][A-Z0-9]{2,}$"


def _has_template(value: str) -> bool:
    return "{{" in value or "{%" in value


class ApprovalParams(Params):
    """``approval``: who is asked where, what they read, how long they have, what a no does."""

    via: Literal["slack", "teams", "email"] = Field(description="slack (buttons), teams or email (links)")
    approvers: str | list[str] = Field(
        description="Who may decide: Slack user ids (U…) for slack, email addresses for teams and email"
    )
    text: str = Field(
        min_length=1, description="The request, a template (Slack mrkdwn, Teams markdown, mail text)"
    )
    channel: str | None = Field(
        None, description="slack: '#channel' or a channel id (needs PPW_SLACK_BOT_TOKEN)"
    )
    webhook: SecretName | None = Field(None, description="teams: name of PPW_TEAMS_WEBHOOKS__<NAME>")
    subject: str | None = Field(None, description="email: the subject (default: 'Approval needed: <rule>')")
    timeout: str = Field("2 days", description='How long approvers have: "4h", "2 days", "3 business days"')
    on_timeout: Literal["decline", "approve", "cancel"] = Field(
        "decline",
        description="No decision by the timeout: decline (then on_decline applies), approve, cancel",
    )
    on_decline: Literal["end", "continue"] | list[dict[str, Any]] = Field(
        "end",
        description="end: the run ends as cancelled; continue: later steps test steps.<id>.declined; "
        "a list of steps: run those instead of the rest of the rule",
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and _has_template(value):
            return value
        parse_duration(value)  # CalendarError (a ValueError) names the accepted forms
        return str(value)

    @model_validator(mode="after")
    def _destination(self) -> ApprovalParams:
        where = {"slack": "channel", "teams": "webhook", "email": None}[self.via]
        for name in ("channel", "webhook"):
            if getattr(self, name) is not None and name != where:
                raise PydanticCustomError(
                    "approval_destination",
                    "{name}: is for via: {owner}, not via: {via}",
                    {"name": name, "owner": "slack" if name == "channel" else "teams", "via": self.via},
                )
        if where is not None and getattr(self, where) is None:
            hint = {
                "channel": "channel: '#partners'",
                "webhook": "webhook: partners (PPW_TEAMS_WEBHOOKS__PARTNERS)",
            }
            raise PydanticCustomError(
                "approval_destination",
                "via: {via} needs {where}:",
                {"via": self.via, "where": where, "hint": hint[where]},
            )
        if self.subject is not None and self.via != "email":
            raise PydanticCustomError("approval_subject", "subject: is for via: email", {})
        self._check_approvers()
        return self

    def _check_approvers(self) -> None:
        listed = approver_list(self.approvers)
        if not listed:
            raise PydanticCustomError("approval_approvers", "approvers: name at least one approver", {})
        if self.via != "slack":
            try:
                email_addresses(self.approvers, "approvers", skip_templates=True)
            except ValueError as exc:
                raise PydanticCustomError("approval_approvers", "{message}", {"message": str(exc)}) from None
            return
        for approver in listed:
            if not _has_template(approver) and not re.match(_SLACK_USER, approver):
                raise PydanticCustomError(
                    "approval_approvers",
                    "approvers: {value!r} is not a Slack user id",
                    {
                        "value": approver,
                        "hint": "a member id such as U024BE7LH (profile → ⋮ → Copy member ID)",
                    },
                )


def approver_list(value: str | list[str]) -> list[str]:
    """``"a@x, b@y"`` or a list, as a list (a template that rendered a list of values, flattened)."""
    items = value if isinstance(value, list) else [value]
    found: list[str] = []
    for item in items:
        parts = [item] if _has_template(str(item)) else str(item).split(",")
        found += [p.strip() for p in parts if p.strip()]
    return list(dict.fromkeys(found))


class ApprovalStep(StepType):
    """``approval``; the channel or webhook labels ``ppw_webhook_deliveries``."""

    name = "approval"
    params = ApprovalParams
    #: ``with:`` keys that may hold a list of steps: the rule model types them as steps and flattens
    #: them into the rule (:mod:`worker.rules.branches`), so the runner only ever sees flat steps
    branches = ("on_decline",)
    result_keys = frozenset(
        {"decision", "approved", "declined", "by", "name", "at", "via", "timed_out", "channel", "ts"}
    )
    destination = ("channel", "webhook")
    with_doc = (
        "`via: slack` + `channel` (buttons; approvers are Slack user ids), `via: teams` + `webhook` or "
        "`via: email` (one-time links; approvers are addresses); `approvers`, `text`, `subject` (email), "
        '`timeout` (`"2 business days"`), `on_timeout` (`decline`, `approve` or `cancel`), '
        "`on_decline` (`end`, `continue` or a list of steps run instead of the rest)"
    )
    result_doc = "`decision`, `approved`, `declined`, `by`, `name`, `at`, `via`, `timed_out`, `channel`, `ts`"

    def run(self, params: ApprovalParams, ctx: StepContext) -> StepResult:
        approvals = Approvals(ctx.services.store, ctx.services.settings)
        if ctx.dry_run:
            return StepResult(
                output={"decision": "approved", "approved": True, "declined": False, "dry_run": True},
                request=self._summary(params),
            )
        request = approvals.request(ctx.connection, ctx.key)
        if request is None:
            request = self._open(params, ctx)
            approvals.save(request)  # before anything is posted: a retry finds it and does not ask twice
        if not request.posted:
            request = self._post(params, request, approvals, ctx)
        decision = approvals.decision(ctx.connection, ctx.key)
        if decision is None:
            if time.time() < request.due - EARLY:
                raise WaitUntil(request.due, f"approval until {_iso(request.due)}")
            _won, decision = approvals.decide(request, self._timeout(params, request))
            if decision.timed_out and request.via == "slack":
                show_on_slack(ctx.services.settings, ctx.services.http, request, decision)
        return self._outcome(params, request, decision)

    # asking -------------------------------------------------------------------------------------
    def _open(self, params: ApprovalParams, ctx: StepContext) -> ApprovalRequest:
        settings = ctx.services.settings
        now = time.time()
        calendar = Calendar.from_settings(settings)
        try:
            moment = parse_duration(params.timeout).apply(
                datetime.fromtimestamp(now, calendar.zone), calendar
            )
        except CalendarError as exc:
            raise PermanentStepError(f"approval: timeout: {exc}") from None
        due = float(moment.timestamp())
        if due - now > settings.wait_max:
            raise PermanentStepError(
                f"approval: timeout {params.timeout!r} is more than PPW_WAIT_MAX "
                f"({settings.wait_max / 86400:g} days)"
            )
        approvers = approver_list(params.approvers)
        if params.via != "slack":  # by address: the decision records who, as the link names them
            try:
                found = email_addresses(params.approvers, "approvers")
            except ValueError as exc:
                raise PermanentStepError(f"approval: {exc}") from None
            approvers = list(dict.fromkeys(address.addr_spec for address in found))
        return ApprovalRequest(
            connection=ctx.connection,
            key=ctx.key,
            run_id=ctx.run_id,
            rule_id=ctx.rule_id,
            step_id=ctx.step_id,
            via=params.via,
            approvers=approvers,
            text=params.text,
            due=due,
            deadline=moment.strftime("%Y-%m-%d %H:%M %Z"),
            created=now,
        )

    def _post(
        self, params: ApprovalParams, request: ApprovalRequest, approvals: Approvals, ctx: StepContext
    ) -> ApprovalRequest:
        if request.via == "slack":
            body = {"channel": params.channel, "text": request.text, "blocks": slack_blocks(request)}
            posted = web_api("chat.postMessage", body, ctx, "approval via slack").output
            request = request.model_copy(update={"channel": posted.get("channel"), "ts": posted.get("ts")})
        elif request.via == "teams":
            assert params.webhook is not None
            card = teams_card(request, {a: _link(approvals, request, a) for a in request.approvers})
            TeamsPost().run(TeamsPostParams(webhook=params.webhook, card=card), ctx)
        else:
            subject = params.subject or f"Approval needed: {request.rule_id}"
            for approver in request.approvers:
                if approver in request.sent:
                    continue
                link = _link(approvals, request, approver)
                mail = EmailSendParams(
                    to=approver, subject=subject, text=mail_text(request, link), html=mail_html(request, link)
                )
                # each approver's message has its own ledger-derived Message-ID
                EmailSend().run(mail, replace(ctx, step_id=f"{ctx.step_id}/{approver}"))
                request = request.model_copy(update={"sent": [*request.sent, approver]})
                approvals.save(request)
        request = request.model_copy(update={"posted": True})
        approvals.save(request)
        return request

    @staticmethod
    def _timeout(params: ApprovalParams, request: ApprovalRequest) -> Decision:
        verdict = "approved" if params.on_timeout == "approve" else "declined"
        return Decision(decision=verdict, by="timeout", at=time.time(), via=request.via, timed_out=True)

    # the answer ---------------------------------------------------------------------------------
    def _outcome(self, params: ApprovalParams, request: ApprovalRequest, decision: Decision) -> StepResult:
        if decision.timed_out and params.on_timeout == "cancel":
            raise CancelRun(f"approval {decision.summary()} (on_timeout: cancel)")
        if decision.decision == "declined" and params.on_decline == "end":
            raise CancelRun(f"approval {decision.summary()}")
        output = {
            "decision": decision.decision,
            "approved": decision.decision == "approved",
            "declined": decision.decision == "declined",
            "by": decision.by,
            "name": decision.name,
            "at": decision.when,
            "via": decision.via,
            "timed_out": decision.timed_out,
            "channel": request.channel,
            "ts": request.ts,
        }
        response = {k: output[k] for k in ("decision", "by", "name", "at", "via", "timed_out")}
        return StepResult(output=output, request=self._summary(params), response=response)

    @staticmethod
    def _summary(params: ApprovalParams) -> dict[str, Any]:
        """The request for the run history: where and whom, never a link (links are capabilities)."""
        where = {"slack": params.channel, "teams": params.webhook, "email": None}[params.via]
        summary: dict[str, Any] = {"via": params.via, "approvers": approver_list(params.approvers)}
        if where:
            summary["channel" if params.via == "slack" else "webhook"] = where
        return summary | {"timeout": params.timeout, "text": params.text}

    @staticmethod
    def needs(params: Mapping[str, Any]) -> list[str]:
        """The settings a request ``via`` this needs where the worker runs (names, never values):
        ``rules check`` warns about the missing ones, ``rules test`` lists them."""
        via = params.get("via")
        if via == "slack":
            return ["PPW_SLACK_BOT_TOKEN", "PPW_SLACK_SIGNING_SECRET"]
        links = ["PPW_PUBLIC_URL", "PPW_APPROVAL_SECRET"]
        if via == "teams":
            webhook = str(params.get("webhook") or "").upper().replace("-", "_")
            return [f"PPW_TEAMS_WEBHOOKS__{webhook}", *links]
        if via == "email":
            return ["PPW_SMTP_URL", *links]
        return []

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """Where the request would go and what the approvers need configured (names, never secrets)."""
        needs = self.needs(params)
        missing = [name for name in needs if not _configured(settings, name)]
        return {"params": params, "needs": needs, "missing": missing}


def _configured(settings: Settings, name: str) -> bool:
    if name.startswith("PPW_TEAMS_WEBHOOKS__"):
        wanted = name.removeprefix("PPW_TEAMS_WEBHOOKS__")
        return any(key.upper().replace("-", "_") == wanted for key in settings.teams_webhooks)
    value = getattr(settings, name.removeprefix("PPW_").lower(), None)
    if value is None:
        return False
    return bool(value.get_secret_value() if hasattr(value, "get_secret_value") else value)


def _link(approvals: Approvals, request: ApprovalRequest, approver: str) -> str:
    try:
        return approvals.link(request, approver)
    except ValueError as exc:
        raise PermanentStepError(f"approval via {request.via}: {exc}") from None


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment).astimezone().isoformat(timespec="minutes")


# what approvers see ---------------------------------------------------------------------------------


def _until(request: ApprovalRequest) -> str:
    """The deadline in the firm's time zone (as computed when the request was made)."""
    return request.deadline or datetime.fromtimestamp(request.due).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def slack_blocks(request: ApprovalRequest, decision: Decision | None = None) -> list[dict[str, Any]]:
    """The Block Kit message: the request, who may decide, and the buttons (or the decision)."""
    who = ", ".join(f"<@{a}>" for a in request.approvers)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": request.text}},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"Approvers: {who} · decide by {_until(request)}"}],
        },
    ]
    if decision is None:
        value = slack_value(request)
        blocks.append(
            {
                "type": "actions",
                "block_id": "ppw_approval",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE_ACTION,
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "value": value,
                    },
                    {
                        "type": "button",
                        "action_id": DECLINE_ACTION,
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Decline"},
                        "value": value,
                    },
                ],
            }
        )
    else:
        mark = "✅" if decision.decision == "approved" else "❌"
        text = f"{mark} *{decision.decision.capitalize()}* by <@{decision.by}> at {decision.when}"
        if decision.timed_out:
            text = f"⏱ No decision by the deadline ({_until(request)}): *{decision.decision}* by the timeout"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return blocks


def show_on_slack(settings: Settings, http: Outbound, request: ApprovalRequest, decision: Decision) -> bool:
    """Replace the buttons of the request's Slack message with the decision (``chat.update``).

    Best effort: the decision stands whether or not Slack took the edit, so a failure is logged
    (without the token), not raised. True when Slack took it.
    """
    token = settings.slack_bot_token
    if token is None or not token.get_secret_value() or not request.channel or not request.ts:
        return False
    body = {
        "channel": request.channel,
        "ts": request.ts,
        "text": f"{request.text} ({decision.decision})",
        "blocks": slack_blocks(request, decision),
    }
    try:
        response = http.post(
            settings.slack_api_url.rstrip("/") + "/chat.update",
            json=body,
            headers={"Authorization": f"Bearer {token.get_secret_value()}"},
        )
        answer = response.json() if response.status_code == 200 else {}
    except (TransportFailure, ValueError) as exc:
        log.warning("could not show the approval's decision on Slack: %s", exc)
        return False
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else None
        log.warning(
            "Slack did not take the approval's decision (chat.update: %s)", error or response.status_code
        )
        return False
    return True


def teams_card(request: ApprovalRequest, links: dict[str, str]) -> dict[str, Any]:
    """An Adaptive Card: the request, the deadline, and one "Review" link per approver."""
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": request.text, "wrap": True},
            {
                "type": "TextBlock",
                "text": f"Decide by {_until(request)}. Each link is for the approver it names "
                "and works once.",
                "wrap": True,
                "isSubtle": True,
                "size": "Small",
            },
        ],
        "actions": [
            {"type": "Action.OpenUrl", "title": f"Review as {approver}", "url": url}
            for approver, url in links.items()
        ],
    }


def mail_text(request: ApprovalRequest, link: str) -> str:
    return (
        f"{request.text}\n\n"
        f"Approve or decline: {link}\n\n"
        f"This link is yours alone, works once and expires {_until(request)}.\n"
    )


def mail_html(request: ApprovalRequest, link: str) -> str:
    return (
        f"<p>{escape(request.text)}</p>"
        f'<p><a href="{escape(link)}">Approve or decline</a></p>'
        f"<p><small>This link is yours alone, works once and expires {escape(_until(request))}.</small></p>"
    )
