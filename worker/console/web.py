"""The console's Starlette app: signed sessions, CSRF, security headers, the pages and actions.

Safety in layers, since the pages show privileged client data:

- every page but ``/login`` and ``/static`` needs a signed-in user; actions need an operator (403);
- or, with ``PPW_CONSOLE_TRUSTED_HEADER``, the user an authenticating proxy names in that header,
  taken only from a request whose socket peer is a trusted proxy (:class:`Forwarded` keeps that
  peer before applying ``X-Forwarded-For``); the header from anywhere else is ignored;
- the session is a cookie signed with ``PPW_CONSOLE_SECRET`` (itsdangerous, timestamped, expiring
  after ``PPW_CONSOLE_SESSION_TTL``), HttpOnly, SameSite=Strict, Secure behind TLS; it names the
  user and a fingerprint of their hash, so changing a password ends older sessions;
- every POST carries the session's CSRF token in its form, or is refused (403);
- failed logins are limited per address and user name (429);
- CSP ``default-src 'self'; script-src 'self'; frame-ancestors 'none'``, nosniff, no referrer,
  ``Cache-Control: no-store``;
- every value a template prints passes through the secret scrubber (configured secrets and
  secret shapes), on top of the run history being stored masked;
- every action writes an audit entry (:mod:`~worker.console.audit`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.console.audit import AuditEntry, AuditLog
from worker.console.auth import (
    MAX_NAME,
    LoginLimiter,
    Network,
    User,
    in_networks,
    parse_proxy,
    parse_users,
    verify,
)
from worker.console.lists import PAGE_SIZE, RUN_FILTERS, BadFilter, Pager, listing, rule_activity
from worker.console.ops import Ops
from worker.console.tryit import TryError, TryIt
from worker.delivery.history import FILTER_STATUSES, RunNotFound
from worker.delivery.replay import ReplayError
from worker.delivery.timers import RunBusy
from worker.errors import PpwError
from worker.observability.scrub import Scrubber, get_scrubber
from worker.polling.status import humanize_seconds

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "ppw_console"
CSP = "default-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
MAX_FORM = 16 * 1024
#: the "try it" form takes pasted JSON, which URL-encoding makes up to three times longer
MAX_TRY_FORM = 96 * 1024
#: ``scope`` key of an action's parsed form (for choices such as a replay's rule version)
FORM = "ppw.form"
#: a replay's choice of rule: the version the run started with, or the rule as loaded now
REPLAY_RULES = {"original": "the rule version the run started with", "current": "the current rule"}
#: ``scope`` key of the socket's peer address, before ``X-Forwarded-For`` is applied
PEER = "ppw.peer"
#: addresses whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed (with the trusted proxies)
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"),)
#: untrusted addresses remembered for "header ignored" warnings (logged once each)
IGNORED_MEMORY = 1024

Handler = Callable[[Request], Awaitable[Response]]


# Middleware -------------------------------------------------------------------------------------


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response, and ``no-store`` to all but static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not scope["path"].startswith("/static/"):
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


class Forwarded:
    """Keeps the socket's peer address in ``scope["ppw.peer"]``, then, for a peer in ``trusted``
    (127.0.0.1 and the trusted proxies), takes the client's address from ``X-Forwarded-For`` (the
    rightmost address that is not itself trusted) and the scheme from ``X-Forwarded-Proto``, so the
    audit and the login limit see the client. Only ``ppw.peer`` decides whom the trusted header is
    believed from."""

    def __init__(self, app: ASGIApp, trusted: tuple[Network, ...] = LOOPBACK) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = client[0] if client else None
            scope[PEER] = peer
            if in_networks(peer, self.trusted):
                headers = dict(scope.get("headers") or [])
                chain = [a.strip() for a in headers.get(b"x-forwarded-for", b"").decode("latin-1").split(",")]
                chain = [a for a in chain if a]
                if chain:
                    untrusted = [a for a in chain if not in_networks(a, self.trusted)]
                    scope["client"] = (untrusted[-1] if untrusted else chain[0], 0)
                proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").split(",")[0].strip().lower()
                if proto in ("http", "https") and scope["type"] == "http":
                    scope["scheme"] = proto
        await self.app(scope, receive, send)


class Sessions:
    """A signed, expiring session cookie (``scope["session"]``), written back when it changed."""

    def __init__(self, app: ASGIApp, secret: str, *, max_age: float, secure: bool) -> None:
        self.app = app
        self.signer = URLSafeTimedSerializer(secret, salt="ppw-console-session")
        self.max_age = int(max_age)
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        session: dict[str, Any] = {}
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                loaded = self.signer.loads(raw, max_age=self.max_age)
                if isinstance(loaded, dict):
                    session = loaded
            except BadSignature:
                session = {}
        scope["session"] = session
        before = json.dumps(session, sort_keys=True)
        secure = self.secure or scope.get("scheme") == "https"

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = scope["session"]
                if json.dumps(current, sort_keys=True) != before:
                    value = self.signer.dumps(current) if current else ""
                    age = self.max_age if current else 0
                    cookie = f"{COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict"
                    if secure:
                        cookie += "; Secure"
                    MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, with_cookie)


# Helpers ----------------------------------------------------------------------------------------


def _ts(value: float | str | None) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _compact(value: Any) -> str:
    """A value on one line, as JSON (a plain string, so the secret scrubber still sees it)."""
    return json.dumps(value, default=str, ensure_ascii=False)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no ``//host``, no scheme) is followed after login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


async def _form(request: Request, limit: int = MAX_FORM) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most ``limit`` bytes."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


class Denied(PpwError):
    """A request the console refuses (no session, no CSRF token, a viewer asking to act): its
    status and the message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# The app ----------------------------------------------------------------------------------------


class Console:
    """The pages and actions over one :class:`~worker.console.ops.Ops`."""

    def __init__(self, ops: Ops, *, scrubber: Scrubber | None = None) -> None:
        self.ops = ops
        settings = ops.settings
        self.users = parse_users(settings)
        self.proxy = parse_proxy(settings)
        self._ignored: set[str] = set()
        self.limiter = LoginLimiter(ops.app.store, ops.connection)
        self.audit = AuditLog(ops.app.store, ops.connection, settings.audit_retention_days * 86400.0)
        self.tryit = TryIt(settings, ops.ruleset)
        self.scrubber = scrubber or Scrubber(settings.secret_values())
        process_wide = get_scrubber()

        def finalize(value: Any) -> Any:
            if isinstance(value, Markup) or value is None or isinstance(value, bool | int | float):
                return "" if value is None else value
            return process_wide.text(self.scrubber.text(str(value)))

        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            finalize=finalize,
        )
        self.env.filters["ts"] = _ts
        self.env.filters["pretty"] = _pretty
        self.env.filters["json"] = _compact
        self.env.filters["human"] = humanize_seconds

    # plumbing --------------------------------------------------------------------------------

    def proxied(self, request: Request) -> str | None:
        """The user name the trusted proxy put in the trusted header; None when the header is off,
        absent, or came from a peer that is not a trusted proxy (ignored, and logged once per peer)."""
        if self.proxy is None:
            return None
        value = request.headers.get(self.proxy.header, "").strip()
        if not value:
            return None
        peer = request.scope.get(PEER)
        if not self.proxy.trusts(peer):
            where = str(peer)
            if where not in self._ignored and len(self._ignored) < IGNORED_MEMORY:
                self._ignored.add(where)
                log.warning(
                    "console: %s from %s ignored: that address is not in PPW_CONSOLE_TRUSTED_PROXIES",
                    self.proxy.header,
                    where,
                )
            return None
        return value

    def proxy_user(self, request: Request, name: str) -> User | None:
        """The proxy's user, with a session of their own (so CSRF works as after a login)."""
        assert self.proxy is not None
        user = self.proxy.user(name) if len(name) <= MAX_NAME else None
        if user is None:
            return None
        session = request.scope["session"]
        fingerprint = str(session.get("f", ""))
        if session.get("u") != user.name or not hmac.compare_digest(fingerprint, user.fingerprint):
            session.clear()
            session.update({"u": user.name, "f": user.fingerprint, "c": secrets.token_urlsafe(32)})
            log.info("console sign-in of %s (%s) via proxy from %s", user.name, user.role, _address(request))
        return user

    def user(self, request: Request) -> User | None:
        name = self.proxied(request)
        if name is not None:
            return self.proxy_user(request, name)
        session = request.scope["session"]
        user = self.users.get(str(session.get("u", "")))
        if user is None or not hmac.compare_digest(str(session.get("f", "")), user.fingerprint):
            return None
        return user

    @staticmethod
    def csrf(request: Request) -> str:
        session = request.scope["session"]
        if not isinstance(session.get("c"), str):
            session["c"] = secrets.token_urlsafe(32)
        token: str = session["c"]
        return token

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        user = self.user(request)
        body = self.env.get_template(template).render(
            user=user,
            csrf=Markup(self.csrf(request)),
            path=request.url.path,
            flash=request.scope["session"].pop("flash", None),
            **context,
        )
        return HTMLResponse(body, status_code=status)

    def page(self, handler: Handler) -> Handler:
        """A page for signed-in users; others go to the login page (and come back after)."""

        async def guarded(request: Request) -> Response:
            if self.user(request) is None:
                name = self.proxied(request)
                if name is not None:
                    log.warning("console: %r, signed in by the proxy, has no role here", name[:64])
                    message = f"{name[:64]} has no role in this console (PPW_CONSOLE_PROXY_ROLES)"
                    return self.render(request, "error.html", 403, message=message)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            return await handler(request)

        return guarded

    def action(self, name: str, act: Callable[[Request, User, str], tuple[str, str]]) -> Handler:
        """A POST by an operator with the session's CSRF token; audited whatever the outcome."""

        async def handle(request: Request) -> Response:
            user = self.user(request)
            form = await _form(request)
            target = next(iter(request.path_params.values()), "")
            request.scope[FORM] = form
            try:
                if user is None:
                    raise Denied(403, "sign in first")
                expected = request.scope["session"].get("c")
                if not isinstance(expected, str) or not hmac.compare_digest(form.get("csrf", ""), expected):
                    raise Denied(403, "the form's CSRF token is missing or wrong; reload the page")
                if not user.can_act:
                    raise Denied(403, f"{user.name} is a viewer: only operators may {name}")
            except Denied as denied:
                if user is not None:
                    self._audit(request, user, name, target, "refused", denied.message)
                return self.render(request, "error.html", denied.status, message=denied.message)
            try:
                message, back = await anyio.to_thread.run_sync(lambda: act(request, user, target))
            except (LookupError, ReplayError, RunBusy, ValueError) as exc:  # not found (run, batch), not now
                self._audit(request, user, name, target, "failed", str(exc))
                return self.render(request, "error.html", 409, message=str(exc))
            self._audit(request, user, name, target, "done", message)
            request.scope["session"]["flash"] = message  # shown once by the next page
            return RedirectResponse(back, status_code=303)

        return handle

    def _audit(
        self, request: Request, user: User, action: str, target: str, outcome: str, detail: str
    ) -> None:
        self.audit.record(
            AuditEntry(
                at=time.time(),
                user=user.name,
                role=user.role,
                action=action,
                target=target,
                address=_address(request),
                outcome=outcome,
                detail=self.scrubber.text(detail),
                via=user.via,
            )
        )

    # login -----------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", next=_safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        session = request.scope["session"]
        expected = session.get("c")
        nxt = _safe_next(form.get("next"))
        if not isinstance(expected, str) or not hmac.compare_digest(form.get("csrf", ""), expected):
            return self.render(request, "error.html", 403, message="the login form expired; reload the page")
        name, password, address = form.get("username", ""), form.get("password", ""), _address(request)
        if await anyio.to_thread.run_sync(self.limiter.blocked, address, name):
            log.warning("console login of %r from %s refused: too many failures", name[:64], address)
            return self.render(
                request, "login.html", 429, next=nxt, error="too many failed logins: wait a minute"
            )
        user = await anyio.to_thread.run_sync(verify, self.users, name, password)
        if user is None:
            await anyio.to_thread.run_sync(self.limiter.failed, address, name)
            log.warning("console login of %r from %s failed", name[:64], address)
            return self.render(request, "login.html", 401, next=nxt, error="wrong user name or password")
        session.clear()  # a fresh session (and CSRF token) for the signed-in user
        session.update({"u": user.name, "f": user.fingerprint, "c": secrets.token_urlsafe(32)})
        log.info("console login of %s (%s) from %s", user.name, user.role, address)
        return RedirectResponse(nxt, status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        expected = request.scope["session"].get("c")
        if not isinstance(expected, str) or not hmac.compare_digest(form.get("csrf", ""), expected):
            return self.render(
                request, "error.html", 403, message="the form's CSRF token is missing or wrong"
            )
        request.scope["session"].clear()
        return RedirectResponse("/login", status_code=303)

    # pages -----------------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        data = await anyio.to_thread.run_sync(self.ops.overview)
        template = "overview_body.html" if request.headers.get("hx-request") else "overview.html"
        return self.render(request, template, o=data, now=time.time())

    async def runs(self, request: Request) -> Response:
        try:
            asked = listing(request.query_params, RUN_FILTERS)
        except BadFilter as exc:
            return self.render(request, "error.html", 400, message=str(exc))
        found = await anyio.to_thread.run_sync(
            lambda: self.ops.runs(asked.query, after=asked.after, before=asked.before)
        )
        template = "runs_table.html" if request.headers.get("hx-request") else "runs.html"
        return self.render(
            request,
            template,
            result=found,
            statuses=FILTER_STATUSES,
            resources=await anyio.to_thread.run_sync(self._resources),
            filters=asked.filters,
            pager=Pager.of(asked, "/runs", found, back="← newer", forward="older →"),
        )

    def _resources(self) -> list[str]:
        """The resources the rules watch, for the filter's choices (none when unknown)."""
        try:
            return self.ops.resources()
        except Exception:  # a broken rules directory must not break the Runs page
            return []

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            run = await anyio.to_thread.run_sync(self.ops.run, run_id)
        except RunNotFound as exc:
            return self.render(request, "error.html", 404, message=str(exc))
        changes = await anyio.to_thread.run_sync(self.ops.changes, run)
        return self.render(request, "run.html", run=run, changes=changes)

    async def dead_letters(self, request: Request) -> Response:
        try:
            asked = listing(request.query_params, ("rule",))
        except BadFilter as exc:
            return self.render(request, "error.html", 400, message=str(exc))
        rule = asked.query.rule
        found = await anyio.to_thread.run_sync(
            lambda: self.ops.app.dead_letters.page(
                self.ops.connection, rule=rule, after=asked.after, before=asked.before, size=PAGE_SIZE
            )
        )
        pager = Pager.of(asked, "/dead-letters", found, back="← earlier", forward="later →")
        return self.render(request, "dead_letters.html", runs=found.runs, rule=rule, pager=pager)

    async def held(self, request: Request) -> Response:
        batches = await anyio.to_thread.run_sync(self.ops.held_batches)
        return self.render(request, "held.html", batches=batches)

    async def rules(self, request: Request) -> Response:
        state = await anyio.to_thread.run_sync(self.ops.rules)
        listed = await anyio.to_thread.run_sync(self.ops.rules_page)
        ids = [r.id for r in listed.rules] if listed is not None else []
        history, connection = self.ops.app.history, self.ops.connection
        activity = await anyio.to_thread.run_sync(lambda: rule_activity(history, connection, ids))
        return self.render(
            request, "rules.html", rules=state, listed=listed, activity=activity, now=time.time()
        )

    async def rule(self, request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        found = await anyio.to_thread.run_sync(self.ops.rule_source, rule_id)
        if found is None:
            return self.render(request, "error.html", 404, message=f"no rule {rule_id!r} is in force")
        return self.render(request, "rule.html", source=found, tried=None, tried_form={})

    async def try_rule(self, request: Request) -> Response:
        """The "try it" form (any signed-in user: it only reads): ``rules explain`` on a record id,
        or ``rules test`` on pasted JSON, for this rule; audited, never written anywhere else."""
        user = self.user(request)
        assert user is not None  # self.page() let the request in
        form = await _form(request, MAX_TRY_FORM)
        rule_id = request.path_params["rule_id"]
        expected = request.scope["session"].get("c")
        if not isinstance(expected, str) or not hmac.compare_digest(form.get("csrf", ""), expected):
            message = "the form's CSRF token is missing or wrong (or the form is too long); reload the page"
            self._audit(request, user, "try", rule_id, "refused", message)
            return self.render(request, "error.html", 403, message=message)
        found = await anyio.to_thread.run_sync(self.ops.rule_source, rule_id)
        if found is None:
            return self.render(request, "error.html", 404, message=f"no rule {rule_id!r} is in force")
        record_id, pasted = form.get("record_id", "").strip(), form.get("json", "")
        typed = {"record_id": record_id, "json": pasted}
        what = f"record {record_id}" if record_id else "pasted JSON"
        try:
            if record_id and pasted.strip():
                raise TryError("give a record id or paste JSON, not both")
            tried = await anyio.to_thread.run_sync(
                lambda: (
                    self.tryit.record(rule_id, record_id) if record_id else self.tryit.pasted(rule_id, pasted)
                )
            )
        except TryError as exc:
            self._audit(request, user, "try", rule_id, "failed", f"{what}: {exc.message}")
            return self.render(
                request,
                "rule.html",
                exc.status,
                source=found,
                tried=None,
                tried_form=typed,
                try_error=exc.message,
            )
        # the verdict only: a failed condition's value may be client data, and the audit is logged
        verdict = "fires" if tried.evaluation.matched else "does not fire"
        self._audit(request, user, "try", rule_id, "done", f"{what}: {verdict}")
        return self.render(request, "rule.html", source=found, tried=tried, tried_form=typed)

    async def audit_page(self, request: Request) -> Response:
        try:
            before = float(request.query_params["before"]) if "before" in request.query_params else None
        except ValueError:
            before = None
        entries = await anyio.to_thread.run_sync(lambda: self.audit.recent(100, before))
        return self.render(request, "audit.html", entries=entries)

    # actions ---------------------------------------------------------------------------------

    @staticmethod
    def _replay_choice(request: Request) -> str:
        choice = request.scope.get(FORM, {}).get("version") or "original"
        if choice not in REPLAY_RULES:
            raise ValueError(f"unknown rule choice {choice!r}: original or current")
        return str(choice)

    def _replay(self, request: Request, user: User, run_id: str) -> tuple[str, str]:
        choice = self._replay_choice(request)
        run = self.ops.replay(run_id, current_rule=choice == "current")
        note = f"; {self.ops.pickup_note}" if self.ops.pickup_note else ""
        return (
            f"replaying run {run.id[:12]} from step {run.failed_step or '-'} with {REPLAY_RULES[choice]} "
            f"(version {run.rule_version}){note}",
            f"/runs/{run.id}",
        )

    async def replay_all_page(self, request: Request) -> Response:
        """Confirms a "replay all": how many dead letters, which, and with which rule."""
        rule = request.query_params.get("rule") or None
        choice = request.query_params.get("version") or "original"
        if choice not in REPLAY_RULES:
            return self.render(request, "error.html", 400, message=f"unknown rule choice {choice!r}")
        runs = await anyio.to_thread.run_sync(lambda: self.ops.dead_letters(rule))
        return self.render(
            request, "replay_all.html", runs=runs, rule=rule, choice=choice, choices=REPLAY_RULES
        )

    def _replay_all(self, request: Request, user: User, _target: str) -> tuple[str, str]:
        form = request.scope.get(FORM, {})
        choice = self._replay_choice(request)
        rule = form.get("rule") or None
        waiting = self.ops.dead_letters(rule)
        if form.get("count") != str(len(waiting)):
            raise ValueError(
                f"there are {len(waiting)} dead letter(s) now, not the {form.get('count') or '?'} you "
                "confirmed: look at the list again"
            )
        done: list[str] = []

        def replayed(run_id: str) -> None:
            done.append(run_id)
            self._audit(request, user, "replay", run_id, "done", f"replay all, with {REPLAY_RULES[choice]}")

        try:
            self.ops.replay_all(rule, current_rule=choice == "current", each=replayed)
        except (LookupError, ReplayError) as exc:
            raise ReplayError(f"replayed {len(done)} of {len(waiting)}, then: {exc}") from None
        note = f"; {self.ops.pickup_note}" if self.ops.pickup_note else ""
        scope = f" of rule {rule}" if rule else ""
        return (
            f"replayed {len(done)} dead letter(s){scope} with {REPLAY_RULES[choice]}{note}",
            "/dead-letters",
        )

    def _cancel(self, request: Request, user: User, run_id: str) -> tuple[str, str]:
        run = self.ops.cancel(run_id, user.name)
        return (
            f"cancelled run {run.id[:12]} (it was waiting at step {run.waiting_step or '-'})",
            f"/runs/{run.id}",
        )

    def _release(self, request: Request, user: User, batch_id: str) -> tuple[str, str]:
        count = self.ops.release(batch_id)
        note = f"; {self.ops.pickup_note}" if self.ops.pickup_note else ""
        return f"released held batch {batch_id}: {count} event(s) sent to the rules{note}", "/held"

    def _discard(self, request: Request, user: User, batch_id: str) -> tuple[str, str]:
        count = self.ops.discard(batch_id)
        return f"discarded held batch {batch_id}: {count} event(s) dropped", "/held"

    def app(self, *, secure_cookies: bool | None = None) -> Starlette:
        settings = self.ops.settings
        assert settings.console_secret is not None
        routes = [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", self.page(self.overview), methods=["GET"]),
            Route("/runs", self.page(self.runs), methods=["GET"]),
            Route("/runs/{run_id}", self.page(self.run), methods=["GET"]),
            Route("/runs/{run_id}/cancel", self.action("cancel", self._cancel), methods=["POST"]),
            Route("/dead-letters", self.page(self.dead_letters), methods=["GET"]),
            Route("/dead-letters/replay-all", self.page(self.replay_all_page), methods=["GET"]),
            Route("/dead-letters/replay-all", self.action("replay all", self._replay_all), methods=["POST"]),
            Route("/dead-letters/{run_id}/replay", self.action("replay", self._replay), methods=["POST"]),
            Route("/held", self.page(self.held), methods=["GET"]),
            Route("/held/{batch_id}/release", self.action("release", self._release), methods=["POST"]),
            Route("/held/{batch_id}/discard", self.action("discard", self._discard), methods=["POST"]),
            Route("/rules", self.page(self.rules), methods=["GET"]),
            Route("/rules/{rule_id}", self.page(self.rule), methods=["GET"]),
            Route("/rules/{rule_id}/try", self.page(self.try_rule), methods=["POST"]),
            Route("/audit", self.page(self.audit_page), methods=["GET"]),
            Route("/favicon.ico", lambda _request: Response(status_code=204), methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ]
        app = Starlette(routes=routes)
        secure = settings.console_secure_cookies if secure_cookies is None else secure_cookies
        app.add_middleware(
            Sessions,
            secret=settings.console_secret.get_secret_value(),
            max_age=settings.console_session_ttl,
            secure=secure,
        )
        app.add_middleware(Forwarded, trusted=LOOPBACK + (self.proxy.proxies if self.proxy else ()))
        app.add_middleware(SecurityHeaders)
        return app


def build_app(ops: Ops, *, scrubber: Scrubber | None = None) -> Starlette:
    """The console app over ``ops`` (its settings say the secret, users and cookie flags)."""
    return Console(ops, scrubber=scrubber).app()
