"""The fast scrubber masks exactly what the straightforward one did, string for string.

``Reference`` below is the scrubber as it was before the fast path (every pattern run over every
string, two full passes for ``Services.mask``), kept verbatim as the oracle. The fast one skips
patterns that cannot match, remembers strings it left unchanged and walks structures once; for a
corpus holding every secret shape the module knows, mixed with random text, both must give the very
same output.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest

from worker.observability import scrub
from worker.observability.scrub import (
    CLEAN_CACHE_MAX_LENGTH,
    CLEAN_CACHE_SIZE,
    MASK,
    MIN_SECRET_LENGTH,
    SECRET_NAMES,
    Scrubber,
    text_through,
    value_through,
)

from .conftest import BOT_TOKEN, CLIENT_SECRET, DSN, HOOK_SECRET, SLACK_URL

# -- the reference: the implementation before the fast path, unchanged -----------------------------

_NAMES = "|".join(SECRET_NAMES)
_REFERENCE_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1\2{MASK}"),
    (
        re.compile(
            rf"""(?i)(["'](?:{_NAMES}|code|token|authorization)["']\s*:\s*)(["'])(?:\\.|(?!\2).)*\2"""
        ),
        rf"\1\2{MASK}\2",
    ),
    (re.compile(rf"""(?i)\b((?:{_NAMES})\s*=\s*)[^\s&"',;)}}\]]+"""), rf"\1{MASK}"),
    (re.compile(r"""(?i)([?&]code=)[^\s&"'#]+"""), rf"\1{MASK}"),
    (
        re.compile(r"(?i)(https?://hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_\-/]+"),
        rf"\1{MASK}",
    ),
    (re.compile(r"(/approvals/)[A-Za-z0-9_\-.]{16,}"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+(@)"), rf"\1{MASK}\2"),
)


def _reference_is_secret_key(key: object) -> bool:
    return str(key).lower().replace("-", "_") in scrub.SECRET_KEYS


class Reference:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        fresh = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH} - self._secrets
        if not fresh:
            return
        self._secrets |= fresh
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def text(self, value: str) -> str:
        if self._pattern is not None:
            value = self._pattern.sub(MASK, value)
        for pattern, replacement in _REFERENCE_SHAPES:
            value = pattern.sub(replacement, value)
        return value

    def value(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {
                k: (MASK if _reference_is_secret_key(k) and obj[k] not in (None, "") else self.value(v))
                for k, v in obj.items()
            }
        if isinstance(obj, tuple):
            return tuple(self.value(v) for v in obj)
        if isinstance(obj, list | set | frozenset):
            return [self.value(v) for v in obj]
        if isinstance(obj, bytes):
            return self.text(obj.decode("utf-8", "replace"))
        return obj


# -- the corpus -------------------------------------------------------------------------------------

SECRETS = [CLIENT_SECRET, BOT_TOKEN, SLACK_URL, HOOK_SECRET, DSN, "short", "ab", "[redacted]x"]

#: Strings that hold each shape (and near misses), as the module's own tests and real traffic do.
SAMPLES = [
    "approve at https://ppw.firm.example/approvals/eyJjIjoidDEifQ.Nxje_rByV09weKDgm",
    "Authorization: Bearer eyJhbGciOi.J9.abc-def_ghi",
    "auth header 'Basic dXNlcjpwYXNz'",
    "BEARER\tabc==",
    "bearer [redacted]",
    "GET /callback?state=xyz&code=Spl0xAuthCode123&x=1",
    "POST /OAuth/Token grant_type=refresh_token&refresh_token=rt-42abc&client_id=c1",
    '{"access_token": "at-secret-1", "expires_in": 86400}',
    "{'refresh_token': 'rt-secret-2', 'token_type': 'bearer'}",
    '{"code":"authcode-7"}',
    '{"client_secret" : "with \\"quote\\" inside"}',
    '{"Authorization": "x", "TOKEN":\'y\'}',
    "TokenSet(access_token=at-repr-3, refresh_token=rt-repr-4)",
    f"posting to {SLACK_URL} failed",
    "https://hooks.slack.com/workflows/T1/A2/345/abcdef",
    "HTTPS://HOOKS.SLACK.COM/triggers/x-y_z",
    "broker amqp://ppw:rabbit-pass@mq:5672/",
    "redis://:only-password@cache:6379/0",
    f"token endpoint said invalid_client for {CLIENT_SECRET}",
    "password=hunter22;",
    "password=[redacted]",
    "API_KEY = k-1 apikey=k-2 secret= s-3 id_token=i-4",
    "exit code=3 for matter 'Smith v. Jones' status_code=200 (about 5 minutes)",
    "about a short note",
    "application/json",
    "http://127.0.0.1:8080/hook?x=1",
    "0123456789abcdef0123456789abcdef",
    "c1:matters:m-1:2026-04-06T10:00:01Z",
    "Müller & Søn, Zürich",
    "\u0130stanbul office: pa\u017f\u017fword=x, Kelvin \u212a, dotless \u0131d_token=y",
    "PASSWORD=\u017fecret id_to\u212aen=z",
    # each of the four characters alone, so each one's case folding is exercised on its own
    "pa\u017f\u017fword=hunter2",
    "\u0131d_token=abc",
    "\u0130D_TOKEN=abc",
    "api_\u212aey=v-1",
    "",
]

#: Pieces random text is built from: every shape's literals in several cases, the characters the
#: patterns care about, the mask itself, secrets, and non-ASCII letters that fold to ASCII.
PIECES = [
    *SECRET_NAMES,
    "Bearer",
    "basic",
    "BASIC",
    "code",
    "Code",
    "token",
    "Authorization",
    "hooks.slack.com/",
    "services/",
    "workflows/",
    "https://",
    "http://",
    "amqp://",
    "user",
    ":",
    "=",
    "&",
    "?",
    "@",
    "/",
    '"',
    "'",
    "\\",
    " ",
    "\t",
    "\n",
    "\u00a0",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    ",",
    ";",
    "#",
    MASK,
    "abc",
    "X-9",
    "==",
    "é",
    "ß",
    "\u0130",
    "\u0131",
    "\u017f",
    "\u212a",
    *SECRETS,
]


def _random_text(rng: random.Random) -> str:
    parts = rng.choices(PIECES, k=rng.randint(0, 14))
    if rng.random() < 0.3:
        parts = [p.upper() if rng.random() < 0.5 else p for p in parts]
    return "".join(parts)


def _corpus(size: int = 4000, seed: int = 20260406) -> list[str]:
    rng = random.Random(seed)
    mixed = [rng.choice(SAMPLES) + _random_text(rng) + rng.choice(SAMPLES) for _ in range(size // 4)]
    return [*SAMPLES, *(_random_text(rng) for _ in range(size)), *mixed]


CORPUS = _corpus()


def _random_structure(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice([*CORPUS[:200], None, 0, 3.5, True, b"Bearer abc", b"\xff code=x"])
    if roll < 0.65:
        keys = rng.choices(
            ["Authorization", "X-Api-Key", "token", "Accept", "name", "set-cookie", "url", "note", 7], k=4
        )
        return {k: rng.choice([None, "", _random_structure(rng, depth + 1)]) for k in keys}
    if roll < 0.8:
        return [_random_structure(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.9:
        return tuple(_random_structure(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    return frozenset(rng.choices(CORPUS[:50], k=3))


def _structures(count: int, seed: int) -> Iterator[Any]:
    rng = random.Random(seed)
    return (_random_structure(rng) for _ in range(count))


# -- equivalence ------------------------------------------------------------------------------------


def test_shapes_are_the_reference_shapes() -> None:
    assert [(s.pattern.pattern, s.pattern.flags, s.replacement) for s in scrub._SHAPES] == [
        (p.pattern, p.flags, r) for p, r in _REFERENCE_SHAPES
    ]


@pytest.mark.parametrize("secrets", [[], SECRETS], ids=["shapes only", "with secrets"])
def test_text_matches_the_reference(secrets: list[str]) -> None:
    fast, reference = Scrubber(secrets), Reference(secrets)
    for text in CORPUS:
        expected = reference.text(text)
        assert fast.text(text) == expected, text
        assert fast.text(text) == expected, f"second (cached) call: {text!r}"


def test_text_matches_the_reference_after_learning_a_secret() -> None:
    fast, reference = Scrubber(SECRETS), Reference(SECRETS)
    for text in CORPUS:
        fast.text(text)  # fill the clean-text cache
    learned = ["code", "abc", "Zürich", "İstanbul", "X-9"]
    fast.add(*learned)
    reference.add(*learned)
    for text in CORPUS:
        assert fast.text(text) == reference.text(text), text


def test_value_matches_the_reference() -> None:
    fast, reference = Scrubber(SECRETS), Reference(SECRETS)
    for obj in _structures(1500, seed=7):
        assert fast.value(obj) == reference.value(obj)


def test_two_scrubbers_in_one_walk_match_two_reference_passes() -> None:
    """``Services.mask``: the deployment's scrubber, then the process-wide one."""
    own, process = [CLIENT_SECRET, HOOK_SECRET], [*SECRETS, "rt-runtime-token"]
    fast = (Scrubber(own), Scrubber(process))
    first, second = Reference(own), Reference(process)
    for obj in _structures(1500, seed=11):
        assert value_through(fast, obj) == second.value(first.value(obj))
    for text in CORPUS:
        assert text_through(fast, text) == second.text(first.text(text)), text


def test_str_subclasses_come_back_as_plain_strings() -> None:
    class Name(str):
        pass

    masked = Scrubber().text(Name("Smith v. Jones"))
    assert type(masked) is str and masked == "Smith v. Jones"
    assert type(Scrubber().value(Name("x"))) is str


# -- why skipping is sound --------------------------------------------------------------------------


def test_every_match_passes_its_shapes_gate() -> None:
    """A pattern is only skipped when it could not have matched."""
    for text in CORPUS:
        lowered = scrub._lowered(text)
        for shape in scrub._SHAPES:
            if shape.pattern.search(text):
                assert shape.may_match(text, lowered), (shape.pattern.pattern, text)
                assert shape.may_match(text, None), (shape.pattern.pattern, text)
                assert lowered is None or scrub._ANY_NEEDLE.search(lowered), text
                assert scrub._ANY_GATE.search(text), text


def test_lower_casing_stands_in_for_ignorecase_outside_four_characters() -> None:
    """The premise of ``_lowered``: outside ``_ASCII_FOLDS``, no character matches the needles'
    ASCII characters case-insensitively, nor lower-cases to ASCII."""
    needle_chars = sorted({c for shape in scrub._SHAPES for n in shape.needles for c in n})
    assert all(c.isascii() and c == c.lower() for c in needle_chars)
    everything = "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000)
    folding = re.compile("|".join(map(re.escape, needle_chars)), re.IGNORECASE)
    assert set(folding.findall(everything)) <= set(scrub._ASCII_FOLDS)
    ascii_char = re.compile("[\x00-\x7f]")
    to_ascii = {c for c in everything if ascii_char.search(c.lower())}
    assert to_ascii <= set(scrub._ASCII_FOLDS)


def test_needles_cannot_be_made_by_masking() -> None:
    """The mask itself holds no needle, so a replacement never opens a new candidate."""
    for shape in scrub._SHAPES:
        for needle in shape.needles:
            assert "[" not in needle and "]" not in needle and needle not in MASK


# -- the caches -------------------------------------------------------------------------------------


def test_only_unchanged_short_text_is_remembered() -> None:
    scrubber = Scrubber([CLIENT_SECRET])
    scrubber.text("application/json")
    scrubber.text(f"secret is {CLIENT_SECRET}")
    scrubber.text("Authorization: Bearer abc")
    scrubber.text("x" * (CLEAN_CACHE_MAX_LENGTH + 1))
    assert scrubber._known.clean == {"application/json"}


def test_the_clean_cache_is_bounded() -> None:
    scrubber = Scrubber()
    for i in range(CLEAN_CACHE_SIZE * 2 + 10):
        scrubber.text(f"value {i}")
    assert 0 < len(scrubber._known.clean) <= CLEAN_CACHE_SIZE


def test_learning_a_secret_forgets_text_that_now_holds_one() -> None:
    scrubber = Scrubber()
    assert scrubber.text("issued at-7f6e5d") == "issued at-7f6e5d"
    assert "issued at-7f6e5d" in scrubber._known.clean
    scrubber.add("at-7f6e5d")
    assert scrubber.text("issued at-7f6e5d") == f"issued {MASK}"


def test_the_secret_key_cache_is_bounded() -> None:
    for i in range(scrub._KEY_CACHE_SIZE * 2):
        assert not scrub.is_secret_key(f"field-{i}")
    assert len(scrub._secret_key_cache) <= scrub._KEY_CACHE_SIZE
    assert scrub.is_secret_key("X-Api-Key") and scrub.is_secret_key("Set-Cookie")
    assert scrub.is_secret_key("x" * 100) is False
