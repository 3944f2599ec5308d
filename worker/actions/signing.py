"""HMAC-SHA256 signatures for outgoing webhooks: ppw's own (Stripe style) or Standard Webhooks.

ppw's header is ``X-PPW-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256(secret, ``<t>.<raw body>``). The receiver recomputes it with the shared secret, compares
in constant time and rejects timestamps too far from its clock (replays). :func:`verify` is the
reference implementation receivers can copy (docs/actions.md shows it).

`Standard Webhooks <https://www.standardwebhooks.com/>`_ (:func:`standard_webhooks_headers`):
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64>``, HMAC-SHA256 of
``"<id>.<timestamp>.<raw body>"`` keyed with the base64-decoded secret after its ``whsec_`` prefix,
so receivers can check it with any Standard Webhooks library
(``standardwebhooks.Webhook(secret).verify(body, headers)``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

HEADER = "X-PPW-Signature"
DEFAULT_TOLERANCE = 300.0
STANDARD_PREFIX = "whsec_"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-PPW-Signature`` header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={signature(secret, body, ts)}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance: float = DEFAULT_TOLERANCE, now: float | None = None
) -> bool:
    """True when ``header`` is a valid signature of ``body`` made within ``tolerance`` seconds."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    return hmac.compare_digest(given, signature(secret, body, ts))


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_<base64>``; the prefix is optional, the
    padding too); ``b""`` when it is not base64."""
    encoded = secret.strip().removeprefix(STANDARD_PREFIX)
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def standard_webhooks_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    """The raw HMAC-SHA256 of ``"<id>.<timestamp>.<body>"``."""
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def standard_webhooks_headers(
    secret: str, msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` for ``body``.

    Raises ``ValueError`` when ``secret`` is not a ``whsec_<base64>`` secret.
    """
    key = standard_webhooks_key(secret)
    if not key:
        raise ValueError("not a Standard Webhooks secret (whsec_<base64>)")
    ts = int(time.time()) if timestamp is None else timestamp
    mac = standard_webhooks_signature(key, msg_id, ts, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
