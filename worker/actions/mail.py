"""``email.send``: a message through the firm's SMTP server.

``PPW_SMTP_URL`` says where and how: ``smtp://user:pass@host:587`` speaks STARTTLS before it logs
in (``?starttls=false`` only for a relay on a trusted network, which then gets no password over
plain text unless it asks for one), ``smtps://user:pass@host:465`` TLS from the first byte.
``?cafile=/path/ca.pem`` trusts a private CA besides the system's. The password is a secret: it is
masked wherever text leaves the process, and no message here quotes the URL. ``PPW_SMTP_FROM`` is
the From unless a step gives ``from:``.

Addresses are checked before anything is sent (``rules check`` checks the literal ones, the runner
the rendered ones), and each error names its field. The Message-ID is derived from the step's
ledger key, ``<key@ppw>``: every attempt of the step sends the same one, so a retry after a
dropped connection mid-``DATA`` (the server may have queued the first) is recognised as the same
message by mail clients and archives. The message says ``Auto-Submitted: auto-generated``
(RFC 3834), so that out-of-office replies are not sent back to it.

Failures: a refused login (535) or any other 5xx is permanent; a 4xx, a dropped connection or a
timeout is transient. Like the other steps, ``run`` is synchronous: the worker runs it on one of
its threads.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, localtime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from worker.actions.base import StepContext, StepResult, StepType
from worker.actions.errors import PermanentStepError, StepError, TransientStepError
from worker.actions.params import EmailSendParams, email_addresses

if TYPE_CHECKING:
    from worker.settings import Settings

Phase = Literal["connect", "login", "envelope", "data"]


@dataclass(frozen=True)
class SmtpServer:
    """``PPW_SMTP_URL``, parsed."""

    host: str
    port: int
    tls: Literal["implicit", "starttls", "none"]
    username: str | None = None
    password: str | None = None
    cafile: str | None = None

    @property
    def where(self) -> str:
        """``host:port``, for messages and the run history (never the credentials)."""
        return f"{self.host}:{self.port}"


def smtp_server(url: str) -> SmtpServer:
    """Parse ``PPW_SMTP_URL``; the errors never quote it (it holds the password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise PermanentStepError("PPW_SMTP_URL is not a URL (smtp://user:pass@host:587)") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise PermanentStepError("PPW_SMTP_URL must be smtp://[user:pass@]host[:port] or smtps://...")
    query = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
    starttls = query.get("starttls", "true").lower()
    if starttls not in ("true", "false", "1", "0", "yes", "no"):
        raise PermanentStepError("PPW_SMTP_URL: starttls must be true or false")
    tls: Literal["implicit", "starttls", "none"]
    if parts.scheme == "smtps":
        tls = "implicit"
    else:
        tls = "starttls" if starttls in ("true", "1", "yes") else "none"
    default_port = {"implicit": 465, "starttls": 587, "none": 25}[tls]
    return SmtpServer(
        host=parts.hostname,
        port=port or default_port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        cafile=query.get("cafile") or None,
    )


def message_id(key: str) -> str:
    """The Message-ID of the step with ledger key ``key``: the same on every attempt."""
    return f"<{key}@ppw>"


def _addresses(value: Any, field: str) -> list[Address]:
    try:
        return email_addresses(value, field)
    except ValueError as exc:
        raise PermanentStepError(f"email.send: {exc}") from None


def _unique(addresses: list[Address]) -> list[str]:
    """The envelope's recipients, each once (``to`` and ``cc`` may share one)."""
    return list(dict.fromkeys(a.addr_spec for a in addresses))


@dataclass(frozen=True)
class _Mail:
    message: EmailMessage
    sender: str
    recipients: list[str]
    summary: dict[str, Any]


def _compose(params: EmailSendParams, ctx: StepContext) -> _Mail:
    settings = ctx.services.settings
    from_field = "from" if params.from_ else "PPW_SMTP_FROM"
    senders = _addresses(params.from_ or settings.smtp_from, from_field)
    if len(senders) != 1:
        raise PermanentStepError(
            "email.send needs one From address: set PPW_SMTP_FROM or the step's from:"
            if not senders
            else f"email.send: {from_field} must be one address"
        )
    to = _addresses(params.to, "to")
    if not to:
        raise PermanentStepError("email.send: to: no address (the rendered value was empty)")
    cc = _addresses(params.cc, "cc")
    bcc = _addresses(params.bcc, "bcc")
    reply_to = _addresses(params.reply_to, "reply_to")
    mid = message_id(ctx.key)
    subject = " ".join(params.subject.split())  # a line break in a rendered subject would end the header
    message = EmailMessage()
    message["From"] = senders[0]
    message["To"] = to
    if cc:
        message["Cc"] = cc
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(localtime())
    message["Message-ID"] = mid
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(params.text, cte="quoted-printable")
    if params.html is not None:
        message.add_alternative(params.html, subtype="html", cte="quoted-printable")
    summary = {
        "from": str(senders[0]),
        "to": [str(a) for a in to],
        "cc": [str(a) for a in cc],
        "bcc": [str(a) for a in bcc],
        "reply_to": [str(a) for a in reply_to],
        "subject": subject,
        "message_id": mid,
        "text": params.text,
        "html": params.html is not None,
    }
    return _Mail(message, senders[0].addr_spec, _unique([*to, *cc, *bcc]), summary)


class EmailSend(StepType):
    """``email.send``; each attempt sends the same Message-ID."""

    name = "email.send"
    params = EmailSendParams
    result_keys = frozenset({"message_id", "accepted", "refused"})
    with_doc = (
        "`to`, `cc`, `bcc`, `reply_to` (an address, `A <a@x>, b@y` or a list), `from` (default "
        "`PPW_SMTP_FROM`), `subject`, `text`, `html` (optional); sent through `PPW_SMTP_URL`"
    )
    result_doc = "`message_id`, `accepted`, `refused` (recipients the server turned down)"

    def run(self, params: EmailSendParams, ctx: StepContext) -> StepResult:
        settings = ctx.services.settings
        if settings.smtp_url is None or not settings.smtp_url.get_secret_value():
            raise PermanentStepError("email.send needs PPW_SMTP_URL (smtp://user:pass@host:587)")
        server = smtp_server(settings.smtp_url.get_secret_value())
        mail = _compose(params, ctx)
        request = ctx.services.mask(
            {"smtp": server.where, "tls": server.tls, **mail.summary}
            | ({"resent": True} if ctx.uncertain else {})
        )
        if ctx.dry_run:
            return StepResult(
                output={"message_id": mail.summary["message_id"], "dry_run": True}, request=request
            )
        refused = _deliver(server, mail, settings.smtp_timeout, ctx)
        accepted = [r for r in mail.recipients if r not in refused]
        output = {"message_id": mail.summary["message_id"], "accepted": accepted, "refused": sorted(refused)}
        response = {"status": 250, **output}
        if refused:
            response["refused_replies"] = {
                r: f"{code} {ctx.services.mask_text(text)}" for r, (code, text) in refused.items()
            }
        return StepResult(output=output, request=request, response=response)

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """The message, with the server by its setting's name (and whether it is configured)."""
        configured = settings.smtp_url is not None and bool(settings.smtp_url.get_secret_value())
        out = {k: params.get(k) for k in ("to", "cc", "bcc", "reply_to", "subject", "text", "html")}
        return {
            "smtp": "PPW_SMTP_URL" + ("" if configured else " (NOT configured here)"),
            "from": params.get("from") or settings.smtp_from or "PPW_SMTP_FROM (NOT configured here)",
            **{k: v for k, v in out.items() if v is not None},
        }


def _deliver(server: SmtpServer, mail: _Mail, timeout: float, ctx: StepContext) -> dict[str, tuple[int, str]]:
    """Send ``mail``; the recipients the server refused (when it took the others)."""
    phase: Phase = "connect"
    client: smtplib.SMTP | None = None
    try:
        context = ssl.create_default_context(cafile=server.cafile)
        if server.tls == "implicit":
            client = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=timeout)
        client.ehlo()
        if server.tls == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if server.username:
            phase = "login"
            client.login(server.username, server.password or "")
        phase = "envelope"
        code, reply = client.mail(mail.sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, mail.sender)
        refused: dict[str, tuple[int, str]] = {}
        for recipient in mail.recipients:
            code, reply = client.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, _said(reply))
        if len(refused) == len(mail.recipients):
            raise smtplib.SMTPRecipientsRefused({r: (c, t.encode()) for r, (c, t) in refused.items()})
        phase = "data"
        # CRLF line ends (RFC 5321): smtplib sends bytes as they are, and a strict server reads
        # a message of bare LFs as one line too long
        code, reply = client.data(mail.message.as_bytes(policy=mail.message.policy.clone(linesep="\r\n")))
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
    except Exception as exc:
        raise _failure(exc, phase, server, ctx) from None
    finally:
        if client is not None:
            _hang_up(client)
    return refused


def _hang_up(client: smtplib.SMTP) -> None:
    """QUIT, politely: the message is the server's once it answered 250, whatever QUIT gets."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _said(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _failure(exc: Exception, phase: Phase, server: SmtpServer, ctx: StepContext) -> StepError:
    """The step error for an SMTP failure: a 5xx (a refused login among them) needs a person; a
    4xx, a dropped connection or a timeout may pass. Messages carry the server's words, masked,
    never the URL."""
    what = f"SMTP {server.where}"
    mask = ctx.services.mask_text
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = {r: (c, _said(t)) for r, (c, t) in exc.recipients.items()}
        said = "; ".join(f"{r}: {c} {mask(t)}" for r, (c, t) in replies.items())
        message = f"{what} refused every recipient ({said})"
        if any(400 <= c < 500 for c, _t in replies.values()):
            return TransientStepError(message)
        return PermanentStepError(message)
    if isinstance(exc, smtplib.SMTPResponseException):  # login, sender, DATA, greeting, HELO
        doing = {"connect": "greeting", "login": "login", "envelope": "sender", "data": "message"}[phase]
        message = f"{what} refused the {doing}: {exc.smtp_code} {mask(_said(exc.smtp_error))}"
        if 400 <= exc.smtp_code < 500:
            return TransientStepError(message)
        return PermanentStepError(message)
    applied = phase == "data"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientStepError(f"{what} closed the connection ({phase})", may_have_applied=applied)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentStepError(
            f"{what}: the server's TLS certificate is not trusted ({exc.verify_message}); "
            "add ?cafile=/path/ca.pem to PPW_SMTP_URL for a private CA"
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentStepError(f"{what}: {mask(str(exc))} (check the starttls= of PPW_SMTP_URL)")
    if isinstance(exc, smtplib.SMTPException):
        # smtplib's own errors without a reply code ("No suitable authentication method found")
        return PermanentStepError(f"{what}: {mask(str(exc))}")
    if isinstance(exc, OSError):  # refused, reset, timed out, TLS broken
        return TransientStepError(f"{what} failed ({phase}): {type(exc).__name__}", may_have_applied=applied)
    return PermanentStepError(f"{what} failed ({phase}): {type(exc).__name__}")
