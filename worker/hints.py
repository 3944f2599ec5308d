"""Did-you-mean hints: the one-line nudge every rules error carries when a near name exists."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` was most likely meant to be, or None when nothing is close.

    Case is ignored for the comparison (``closed`` suggests ``Closed``) and the candidate is
    returned as spelled in the catalogue.
    """
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    if word.lower() in by_lower and by_lower[word.lower()] != word:
        return by_lower[word.lower()]
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """``did you mean 'status'?`` or None."""
    match = closest(word, candidates)
    return f"did you mean {match!r}?" if match else None


def one_of(candidates: Iterable[str], limit: int = 12) -> str:
    """``one of 'a', 'b', 'c'`` (truncated) for hints listing the valid choices."""
    items = sorted(candidates)
    shown = ", ".join(repr(c) for c in items[:limit])
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return f"one of {shown}{more}" if items else "nothing is valid here"


def suggest(word: str, candidates: Iterable[str]) -> str:
    """A did-you-mean hint when a near name exists, else the list of valid choices."""
    pool = list(candidates)
    return did_you_mean(word, pool) or f"expected {one_of(pool)}"
