"""Masking secrets wherever text leaves the process: log lines, Sentry events, run history, errors.

A law firm's records are privileged and its credentials open its whole practice, so masking is done
twice over: by *value* (every configured secret, found wherever it appears) and by *shape* (bearer
tokens, OAuth fields in query strings, JSON and ``key=value`` text, Slack webhook URLs), which also
catches tokens that are never in the settings, such as the access and refresh tokens PracticePanther
hands out at run time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "[redacted]"

#: Secrets shorter than this are not masked by value: masking every ``"ab"`` would shred the logs,
#: and a credential that short protects nothing anyway. Shape-based masking still applies.
MIN_SECRET_LENGTH = 4

#: Names whose values are credentials wherever they appear (query strings, JSON, form bodies, reprs).
SECRET_NAMES: tuple[str, ...] = (
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "password",
    "api_key",
    "apikey",
    "secret",
)

#: Mapping keys whose values are masked when scrubbing structured data (compared lower-case, with
#: ``-`` read as ``_``). ``code`` is the OAuth authorization code.
SECRET_KEYS: frozenset[str] = frozenset(
    {
        *SECRET_NAMES,
        "code",
        "token",
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_api_key",
        "signature",
        "x_ppw_signature",
        "webhook_url",
        "sentry_dsn",
        "dsn",
    }
)

#: Keys whose values are client data (PracticePanther records and their history, payloads): kept
#: out of log arguments and Sentry events whole, since no pattern can tell privileged text apart.
CONTENT_KEYS: frozenset[str] = frozenset(
    {
        "record",
        "records",
        "previous",
        "changes",
        "data",
        "body",
        "payload",
        "vars",
        "cookies",
        "args",
        "kwargs",
    }
)
FILTERED = "[Filtered]"

_NAMES = "|".join(SECRET_NAMES)

# Each pattern keeps the part that says *what* the value is (group 1) and masks the value itself.
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer <token> / Basic <credentials>
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1\2{MASK}"),
    # "access_token": "..."  or  'refresh_token': '...'  (JSON and Python reprs); also "code"
    (
        re.compile(
            rf"""(?i)(["'](?:{_NAMES}|code|token|authorization)["']\s*:\s*)(["'])(?:\\.|(?!\2).)*\2"""
        ),
        rf"\1\2{MASK}\2",
    ),
    # access_token=... in query strings, form bodies and key=value text
    (re.compile(rf"""(?i)\b((?:{_NAMES})\s*=\s*)[^\s&"',;)}}\]]+"""), rf"\1{MASK}"),
    # ?code=... / &code=... (the OAuth authorization code, only in query position)
    (re.compile(r"""(?i)([?&]code=)[^\s&"'#]+"""), rf"\1{MASK}"),
    # Slack incoming-webhook and workflow URLs carry their secret in the path
    (
        re.compile(r"(?i)(https?://hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_\-/]+"),
        rf"\1{MASK}",
    ),
    # credentials embedded in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+(@)"), rf"\1{MASK}\2"),
)


def _normalise_key(key: object) -> str:
    return str(key).lower().replace("-", "_")


def is_secret_key(key: object) -> bool:
    """True for mapping keys whose values are credentials (``Authorization``, ``refresh_token`` ...)."""
    return _normalise_key(key) in SECRET_KEYS


def redact_content(obj: Any) -> Any:
    """A copy of ``obj`` with the values under :data:`CONTENT_KEYS` replaced by ``[Filtered]``."""
    if isinstance(obj, Mapping):
        return {
            k: FILTERED
            if _normalise_key(k) in CONTENT_KEYS and v not in (None, "", [], {})
            else redact_content(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return (
            type(obj)(redact_content(v) for v in obj)
            if isinstance(obj, list)
            else tuple(map(redact_content, obj))
        )
    return obj


class Scrubber:
    """Masks known secret values and secret-shaped text.

    Parameters
    ----------
    secrets:
        Literal values to mask wherever they appear (``Settings.secret_values()`` plus any token
        learned at run time through :meth:`add`).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Also mask these values from now on (e.g. an access token just obtained)."""
        fresh = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH} - self._secrets
        if not fresh:
            return
        self._secrets |= fresh
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def __repr__(self) -> str:
        return f"Scrubber(<{len(self._secrets)} secrets>)"

    def text(self, value: str) -> str:
        """``value`` with every secret and secret-shaped substring replaced by ``[redacted]``."""
        if self._pattern is not None:
            value = self._pattern.sub(MASK, value)
        for pattern, replacement in _SHAPES:
            value = pattern.sub(replacement, value)
        return value

    def value(self, obj: Any) -> Any:
        """A copy of ``obj`` (mappings, sequences, strings) with secrets masked; other values as-is.

        Values under secret keys (:data:`SECRET_KEYS`) are replaced whole, whatever their type.
        """
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {
                k: (MASK if is_secret_key(k) and obj[k] not in (None, "") else self.value(v))
                for k, v in obj.items()
            }
        if isinstance(obj, tuple):
            return tuple(self.value(v) for v in obj)
        if isinstance(obj, list | set | frozenset):
            return [self.value(v) for v in obj]
        if isinstance(obj, bytes):
            return self.text(obj.decode("utf-8", "replace"))
        return obj


_current = Scrubber()


def get_scrubber() -> Scrubber:
    """The process-wide scrubber that :func:`worker.observability.configure_logging` set up."""
    return _current


def set_scrubber(scrubber: Scrubber) -> None:
    global _current
    _current = scrubber


def scrub_text(value: str) -> str:
    """Mask secrets in ``value`` with the process-wide scrubber (for run history, error messages)."""
    return _current.text(value)


def scrub_value(obj: Any) -> Any:
    """Mask secrets in a structure with the process-wide scrubber."""
    return _current.value(obj)


def add_secrets(*secrets: str) -> None:
    """Teach the process-wide scrubber values learned at run time (fresh OAuth tokens)."""
    _current.add(*secrets)
