"""Masking secrets wherever text leaves the process: log lines, Sentry events, run history, errors.

A law firm's records are privileged and its credentials open its whole practice, so masking is done
twice over: by *value* (every configured secret, found wherever it appears) and by *shape* (bearer
tokens, OAuth fields in query strings, JSON and ``key=value`` text, Slack webhook URLs), which also
catches tokens that are never in the settings, such as the access and refresh tokens PracticePanther
hands out at run time.

Masking runs on every log line and on every step's request, response and output, and almost all of
that text holds nothing to mask. So each shape states what any match of it must contain and is
skipped for text lacking it, and a scrubber remembers the short strings it left unchanged: the
output is exactly what running every pattern over every string gives (the tests keep that
implementation as their oracle), only most strings cost a set lookup or one search.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

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
        "x_slack_signature",
        "webhook_signature",
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


#: Outside ASCII, the only characters that match ASCII letters under ``re.IGNORECASE`` or that
#: lower-case to ASCII (Turkish dotted and dotless i, the long s, the Kelvin sign). In text without
#: them, a lower-case ASCII literal is in ``text.lower()`` exactly when a case-insensitive search of
#: ``text`` finds it.
_ASCII_FOLDS = ("\u0130", "\u0131", "\u017f", "\u212a")


def _lowered(value: str) -> str | None:
    """``value.lower()`` if plain substring tests on it can stand in for ``(?i)`` searches."""
    if value.isascii() or not any(c in value for c in _ASCII_FOLDS):
        return value.lower()
    return None


def _literals(needles: Iterable[str], flags: int = 0) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(n) for n in needles), flags)


class _Shape(NamedTuple):
    """A secret shape, and what every match of it contains, so most text can skip it cheaply.

    Every match contains one of ``needles`` (lower-case literals of ``pattern``, matched as
    case-insensitively as the pattern matches them) and the character ``needs`` (``""``: none).
    Text lacking them cannot match, and running the pattern over it would return it unchanged.
    """

    pattern: re.Pattern[str]
    replacement: str
    needles: tuple[str, ...]
    needs: str
    gate: re.Pattern[str]

    def may_match(self, value: str, lowered: str | None) -> bool:
        if self.needs not in value:
            return False
        if lowered is None:
            return self.gate.search(value) is not None
        return any(needle in lowered for needle in self.needles)


def _shape(pattern: str, replacement: str, needles: Iterable[str], needs: str = "") -> _Shape:
    found = tuple(needles)
    return _Shape(re.compile(pattern), replacement, found, needs, _literals(found, re.IGNORECASE))


# Each pattern keeps the part that says *what* the value is (group 1) and masks the value itself.
# They run one after the other, each on the previous one's output.
_SHAPES: tuple[_Shape, ...] = (
    # Authorization: Bearer <token> / Basic <credentials>
    _shape(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]+=*", rf"\1\2{MASK}", ("bearer", "basic")),
    # "access_token": "..."  or  'refresh_token': '...'  (JSON and Python reprs); also "code"
    _shape(
        rf"""(?i)(["'](?:{_NAMES}|code|token|authorization)["']\s*:\s*)(["'])(?:\\.|(?!\2).)*\2""",
        rf"\1\2{MASK}\2",
        (*SECRET_NAMES, "code", "token", "authorization"),
        ":",
    ),
    # access_token=... in query strings, form bodies and key=value text
    _shape(rf"""(?i)\b((?:{_NAMES})\s*=\s*)[^\s&"',;)}}\]]+""", rf"\1{MASK}", SECRET_NAMES, "="),
    # ?code=... / &code=... (the OAuth authorization code, only in query position)
    _shape(r"""(?i)([?&]code=)[^\s&"'#]+""", rf"\1{MASK}", ("?code=", "&code=")),
    # Slack incoming-webhook and workflow URLs carry their secret in the path
    _shape(
        r"(?i)(https?://hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_\-/]+",
        rf"\1{MASK}",
        ("hooks.slack.com/",),
    ),
    # approval links: the path after /approvals/ is the approver's one-time capability
    _shape(r"(/approvals/)[A-Za-z0-9_\-.]{16,}", rf"\1{MASK}", ("/approvals/",)),
    # credentials embedded in URLs: scheme://user:password@host
    _shape(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+(@)", rf"\1{MASK}\2", ("://",), "@"),
)


def _fewest(needles: Iterable[str]) -> tuple[str, ...]:
    """The needles that contain no other one: text holds one of these iff it holds any needle."""
    unique = set(needles)
    return tuple(sorted(n for n in unique if not any(m != n and m in n for m in unique)))


_EVERY_NEEDLE = _fewest(n for shape in _SHAPES for n in shape.needles)
#: Text in which these find nothing cannot hold any secret shape (``_ANY_GATE`` for text whose
#: lower-case form cannot be trusted, see :func:`_lowered`).
_ANY_NEEDLE = _literals(_EVERY_NEEDLE)
_ANY_GATE = _literals(_EVERY_NEEDLE, re.IGNORECASE)


def _mask_shapes(value: str) -> str:
    """Every shape run over ``value`` in order, skipping those that cannot match."""
    lowered = _lowered(value)
    if lowered is None:
        if _ANY_GATE.search(value) is None:
            return value
    elif _ANY_NEEDLE.search(lowered) is None:
        return value
    for shape in _SHAPES:
        if shape.may_match(value, lowered):
            masked = shape.pattern.sub(shape.replacement, value)
            if masked != value:
                value, lowered = masked, _lowered(masked)
    return value


#: Masking the same short strings over and over (header values, URLs, field values) is the common
#: case, so each scrubber remembers up to this many strings it left unchanged. Only unchanged text
#: is kept: it holds nothing the scrubber would mask, and it is what the logs show anyway.
CLEAN_CACHE_SIZE = 4096
CLEAN_CACHE_MAX_LENGTH = 256

_KEY_CACHE_SIZE = 1024
_KEY_CACHE_MAX_LENGTH = 64
_secret_key_cache: dict[str, bool] = {}


def _normalise_key(key: object) -> str:
    return str(key).lower().replace("-", "_")


def is_secret_key(key: object) -> bool:
    """True for mapping keys whose values are credentials (``Authorization``, ``refresh_token`` ...)."""
    if type(key) is not str or len(key) > _KEY_CACHE_MAX_LENGTH:
        return _normalise_key(key) in SECRET_KEYS
    # the same few header and field names come back on every call
    known = _secret_key_cache.get(key)
    if known is None:
        if len(_secret_key_cache) >= _KEY_CACHE_SIZE:
            _secret_key_cache.clear()
        known = _secret_key_cache[key] = _normalise_key(key) in SECRET_KEYS
    return known


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


class _Known(NamedTuple):
    """What a scrubber masks by value, swapped whole by :meth:`Scrubber.add`.

    The clean-text cache lives here so that learning a secret drops it atomically: a thread still
    masking with the old secrets can only add to the old, discarded cache.
    """

    pattern: re.Pattern[str] | None
    shortest: int
    clean: set[str]


#: Scalars that are returned as they are, checked before the slower ``isinstance`` chain.
_PLAIN = frozenset({int, float, bool, type(None)})


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
        self._known = _Known(None, 0, set())
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Also mask these values from now on (e.g. an access token just obtained)."""
        fresh = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH} - self._secrets
        if not fresh:
            return
        self._secrets |= fresh
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(s) for s in ordered))
        self._known = _Known(pattern, len(ordered[-1]), set())

    def __repr__(self) -> str:
        return f"Scrubber(<{len(self._secrets)} secrets>)"

    def text(self, value: str) -> str:
        """``value`` with every secret and secret-shaped substring replaced by ``[redacted]``."""
        if type(value) is not str:
            value = str.__str__(value)  # a plain copy, as ``re.sub`` would return
        known = self._known
        if value in known.clean:
            return value
        masked = value
        if known.pattern is not None and len(value) >= known.shortest:
            masked = known.pattern.sub(MASK, masked)
        masked = _mask_shapes(masked)
        if masked == value and len(value) <= CLEAN_CACHE_MAX_LENGTH:
            if len(known.clean) >= CLEAN_CACHE_SIZE:
                known.clean.clear()
            known.clean.add(value)
        return masked

    def value(self, obj: Any) -> Any:
        """A copy of ``obj`` (mappings, sequences, strings) with secrets masked; other values as-is.

        Values under secret keys (:data:`SECRET_KEYS`) are replaced whole, whatever their type.
        """
        return value_through((self,), obj)


def text_through(scrubbers: Sequence[Scrubber], value: str) -> str:
    """``value`` masked by each scrubber in turn (a deployment's own, then the process-wide one)."""
    for scrubber in scrubbers:
        value = scrubber.text(value)
    return value


def value_through(scrubbers: Sequence[Scrubber], obj: Any) -> Any:
    """What each scrubber's :meth:`~Scrubber.value` in turn would give, in one walk and one copy.

    Masking twice used to walk and copy the whole structure twice; here each string goes through
    every scrubber on a single walk, and secret keys are decided once.
    """
    kind = type(obj)
    if kind is str:
        return text_through(scrubbers, obj)
    if kind in _PLAIN:
        return obj
    if kind is dict:
        return _mapping_through(scrubbers, obj)
    if isinstance(obj, str):
        return text_through(scrubbers, obj)
    if isinstance(obj, Mapping):
        return _mapping_through(scrubbers, obj)
    if isinstance(obj, tuple):
        return tuple(value_through(scrubbers, v) for v in obj)
    if isinstance(obj, list | set | frozenset):
        return [value_through(scrubbers, v) for v in obj]
    if isinstance(obj, bytes):
        return text_through(scrubbers, obj.decode("utf-8", "replace"))
    return obj


def _mapping_through(scrubbers: Sequence[Scrubber], obj: Mapping[Any, Any]) -> dict[Any, Any]:
    return {
        k: (_secret_through(scrubbers, obj[k], v) if is_secret_key(k) else value_through(scrubbers, v))
        for k, v in obj.items()
    }


def _secret_through(scrubbers: Sequence[Scrubber], looked_up: Any, value: Any) -> Any:
    """A secret key's value after each scrubber in turn: each one masks it whole unless empty."""
    if looked_up not in (None, ""):
        return MASK
    for i, scrubber in enumerate(scrubbers):
        if i and value not in (None, ""):
            return MASK
        value = scrubber.value(value)
    return value


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
