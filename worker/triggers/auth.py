"""Who may call a hook: the sender proves it knows the hook's secret, the way that sender signs.

Each hook says how (``verify:``, default ``hmac``); every scheme is one function registered in
:data:`SCHEMES` with :func:`scheme`, so supporting another sender is one more function:

========================  =====================================================================
``hmac`` (default)        ``X-PPW-Signature: t=<unix seconds>,v1=<hex>``, HMAC-SHA256 of
                          ``"<t>.<raw body>"``: ppw's own format, what :mod:`worker.actions.signing`
                          sends from ``http.request``
``standard-webhooks``     `Standard Webhooks <https://www.standardwebhooks.com/>`_: ``webhook-id``,
                          ``webhook-timestamp`` and ``webhook-signature: v1,<base64>`` (several,
                          space separated), HMAC-SHA256 of ``"<id>.<timestamp>.<raw body>"`` keyed
                          with the base64 secret after ``whsec_``
``stripe``                ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=...]``, HMAC-SHA256 of
                          ``"<t>.<raw body>"`` keyed with the whole ``whsec_...`` secret
``github``                ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``
``typeform``              ``Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body>``
``calendly``              ``Calendly-Webhook-Signature: t=<unix seconds>,v1=<hex>``, HMAC-SHA256 of
                          ``"<t>.<raw body>"``
``bearer``                ``Authorization: Bearer <secret>`` (form builders, Zapier): weaker, anyone
                          who sees one request can replay it
``none``                  nothing: only with ``allow_unsigned: true`` on the hook
========================  =====================================================================

The secret is ``PPW_WEBHOOK_SECRETS__<NAME>``. Schemes with a timestamp refuse one further than the
replay window from our clock (``stale``), so a captured request cannot be replayed later; GitHub's
and Typeform's signatures carry no timestamp. Several signatures in one header are all compared (a
sender rotating its secret signs with both), each in constant time, so the time taken does not tell
which failed. A refusal says *why* (``reason`` is the metric label, ``detail`` goes to the log and
the 401), never with the secret or the signature the sender sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.actions.signing import HEADER, standard_webhooks_key, standard_webhooks_signature

__all__ = [
    "HEADER",
    "SCHEMES",
    "Inbound",
    "Scheme",
    "Verdict",
    "check_bearer",
    "check_signature",
    "env_name",
    "hook_secret",
    "scheme",
]


def env_name(secret_name: str) -> str:
    """The environment variable holding a hook's secret: ``intake-form`` ->
    ``PPW_WEBHOOK_SECRETS__INTAKE_FORM`` (a shell variable cannot contain ``-``)."""
    return "PPW_WEBHOOK_SECRETS__" + secret_name.upper().replace("-", "_")


def hook_secret(secrets: Mapping[str, Any], secret_name: str) -> str:
    """The configured secret for ``secret_name`` (``-`` and ``_`` alike), or ``""``."""
    for candidate in (secret_name, secret_name.replace("-", "_")):
        value = secrets.get(candidate)
        if value is not None:
            text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            if text:
                return str(text)
    return ""


@dataclass(frozen=True)
class Verdict:
    """The outcome of authenticating one request; ``reason`` is a metric label when it failed."""

    ok: bool
    reason: str = "ok"
    detail: str = ""

    @classmethod
    def failed(cls, reason: str, detail: str) -> Verdict:
        return cls(False, reason, detail)


@dataclass(frozen=True)
class Inbound:
    """One delivery as a scheme sees it: the headers, the exact bytes, the secret and the clock."""

    headers: Mapping[str, str]
    body: bytes
    secret: str
    now: float
    window: float

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None:
            value = self.headers.get(name.lower())
        return value.strip() if value is not None else None


Check = Callable[[Inbound], Verdict]


@dataclass(frozen=True)
class Scheme:
    """A way senders sign: its ``verify:`` name, the headers the sender sets, and the check."""

    name: str
    check: Check
    headers: tuple[str, ...]
    challenge: str
    needs_secret: bool = True
    #: a signed header naming the delivery, the same on the sender's retries (dedupes like
    #: ``Idempotency-Key``)
    delivery_header: str | None = None


#: ``verify:`` name -> scheme; :func:`scheme` adds to it.
SCHEMES: dict[str, Scheme] = {}


def scheme(
    name: str,
    *headers: str,
    challenge: str | None = None,
    needs_secret: bool = True,
    delivery_header: str | None = None,
) -> Callable[[Check], Check]:
    """Register the decorated check as ``verify: <name>``; ``headers`` are the ones the sender sets."""

    def register(check: Check) -> Check:
        SCHEMES[name] = Scheme(
            name,
            check,
            headers,
            challenge or f'{name} realm="ppw"',
            needs_secret=needs_secret,
            delivery_header=delivery_header,
        )
        return check

    return register


# shared pieces -----------------------------------------------------------------------------------


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _matches(given: list[bytes], expected: bytes) -> bool:
    """Constant-time, against every candidate (so the time does not tell which one failed)."""
    matched = [hmac.compare_digest(candidate, expected) for candidate in given]
    return any(matched)


def _fresh(header: str, timestamp: int, request: Inbound) -> Verdict | None:
    away = abs(request.now - timestamp)
    if away > request.window:
        return Verdict.failed("stale", f"{header} timestamp is {away:.0f}s away (window {request.window:g}s)")
    return None


def _hex(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        return b""


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _timestamped_hex(header: str, request: Inbound) -> Verdict:
    """``<header>: t=<unix seconds>,v1=<hex>[,v1=<hex>]``, HMAC-SHA256 of ``"<t>.<body>"``: the
    format of ppw, Stripe and Calendly (other keys, such as Stripe's test-mode ``v0``, are ignored)."""
    value = request.header(header)
    if not value:
        return Verdict.failed("unsigned", f"missing {header} header")
    timestamp: int | None = None
    given: list[bytes] = []
    for part in value.split(","):
        name, _, item = part.strip().partition("=")
        item = item.strip()
        if name == "t" and item.lstrip("-").isdigit():
            timestamp = int(item)
        elif name == "v1" and item:
            given.append(_hex(item))
    if timestamp is None or not given:
        return Verdict.failed("bad_signature", f"{header} must look like t=<unix seconds>,v1=<hex>")
    stale = _fresh(header, timestamp, request)
    if stale is not None:
        return stale
    expected = _mac(request.secret.encode(), f"{timestamp}.".encode() + request.body)
    if not _matches(given, expected):
        return Verdict.failed("bad_signature", f"{header} does not match the body")
    return Verdict(True)


def _prefixed(header: str, prefix: str, decode: Callable[[str], bytes], request: Inbound) -> Verdict:
    """``<header>: <prefix><encoded HMAC-SHA256 of the body>`` (GitHub: hex, Typeform: base64)."""
    value = request.header(header)
    if not value:
        return Verdict.failed("unsigned", f"missing {header} header")
    if not value.startswith(prefix) or not value[len(prefix) :].strip():
        return Verdict.failed("bad_signature", f"{header} must look like {prefix}<signature>")
    given = decode(value[len(prefix) :].strip())
    if not _matches([given], _mac(request.secret.encode(), request.body)):
        return Verdict.failed("bad_signature", f"{header} does not match the body")
    return Verdict(True)


# the schemes -------------------------------------------------------------------------------------


@scheme("hmac", HEADER, challenge='PPW-HMAC-SHA256 realm="ppw"')
def _ppw_hmac(request: Inbound) -> Verdict:
    return _timestamped_hex(HEADER, request)


@scheme(
    "standard-webhooks",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    delivery_header="webhook-id",
)
def _standard_webhooks(request: Inbound) -> Verdict:
    msg_id = request.header("webhook-id")
    timestamp = request.header("webhook-timestamp")
    signatures = request.header("webhook-signature")
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signatures),
        )
        if not value
    ]
    if missing or msg_id is None or timestamp is None or signatures is None:
        return Verdict.failed("unsigned", f"missing {', '.join(missing)} header")
    if not timestamp.isdigit():
        return Verdict.failed("bad_signature", "webhook-timestamp must be unix seconds")
    stale = _fresh("webhook-timestamp", int(timestamp), request)
    if stale is not None:
        return stale
    key = standard_webhooks_key(request.secret)
    if not key:
        return Verdict.failed("bad_secret", "the configured secret is not a whsec_<base64> secret")
    given = [
        _b64(item.partition(",")[2])
        for item in signatures.split()
        if item.partition(",")[0] == "v1" and item.partition(",")[2]
    ]
    if not given:
        return Verdict.failed("bad_signature", "webhook-signature must hold v1,<base64> signatures")
    expected = standard_webhooks_signature(key, msg_id, int(timestamp), request.body)
    if not _matches(given, expected):
        return Verdict.failed("bad_signature", "webhook-signature does not match the id, timestamp and body")
    return Verdict(True)


@scheme("stripe", "Stripe-Signature")
def _stripe(request: Inbound) -> Verdict:
    return _timestamped_hex("Stripe-Signature", request)


@scheme("github", "X-Hub-Signature-256")
def _github(request: Inbound) -> Verdict:
    return _prefixed("X-Hub-Signature-256", "sha256=", _hex, request)


@scheme("typeform", "Typeform-Signature")
def _typeform(request: Inbound) -> Verdict:
    return _prefixed("Typeform-Signature", "sha256=", _b64, request)


@scheme("calendly", "Calendly-Webhook-Signature")
def _calendly(request: Inbound) -> Verdict:
    return _timestamped_hex("Calendly-Webhook-Signature", request)


@scheme("bearer", "Authorization", challenge='Bearer realm="ppw"')
def _bearer(request: Inbound) -> Verdict:
    header = request.header("Authorization")
    if not header:
        return Verdict.failed("unsigned", "missing Authorization header")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        return Verdict.failed("bad_token", "Authorization must be 'Bearer <token>'")
    if not hmac.compare_digest(token.strip().encode(), request.secret.encode()):
        return Verdict.failed("bad_token", "token does not match")
    return Verdict(True)


@scheme("none", needs_secret=False)
def _unsigned(request: Inbound) -> Verdict:
    return Verdict(True)


# the functions of the two original schemes, kept for callers ------------------------------------


def check_signature(
    headers: Mapping[str, str], body: bytes, secret: str, *, now: float, window: float
) -> Verdict:
    """The ``X-PPW-Signature`` header signs ``body`` with ``secret`` within ``window`` seconds of ``now``."""
    return _ppw_hmac(Inbound(headers, body, secret, now, window))


def check_bearer(headers: Mapping[str, str], secret: str) -> Verdict:
    """``Authorization: Bearer <secret>``."""
    return _bearer(Inbound(headers, b"", secret, 0.0, 0.0))
