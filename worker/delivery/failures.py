"""What kind of failure an exception is: worth retrying later, or needing a person.

Every error a step can raise is sorted here into *transient* (a timeout, a 5xx, a 429, the state
store unreachable: retry with backoff, honouring ``Retry-After``) or *permanent* (validation errors,
a missing Slack channel, a template that does not render: straight to the dead-letter store), so
the retry policy lives in one place instead of in every executor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from worker.errors import PpwError
from worker.observability.scrub import scrub_text


@dataclass(frozen=True)
class Failure:
    """An exception, classified."""

    reason: str
    transient: bool
    retry_after: float | None = None
    kind: str = ""
    #: The failed operation may have taken effect (see :class:`~worker.errors.PpwError`).
    may_have_applied: bool = False


def classify(exc: BaseException) -> Failure:
    """Sort any exception a step or the runner raised into transient or permanent.

    ppw's own errors (:class:`~worker.errors.PpwError`: step errors, PracticePanther client
    errors, the state store down) say themselves whether they are transient, how long the far
    side asked us to wait and whether they may have applied; other network failures are transient;
    anything else (a bug, a bad parameter) is permanent so it reaches a person instead of retrying
    forever.
    """
    kind = type(exc).__name__
    reason = scrub_text(str(exc) or kind)
    if isinstance(exc, PpwError):
        retry_after = exc.retry_after
        return Failure(
            reason=reason,
            transient=exc.transient,
            retry_after=float(retry_after) if retry_after is not None else None,
            kind=kind,
            may_have_applied=exc.may_have_applied,
        )
    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return Failure(reason=reason, transient=True, kind=kind)
    return Failure(reason=reason, transient=False, kind=kind)


def backoff_seconds(attempt: int, *, base: float, maximum: float, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter for attempt 1, 2, 3 ...; ``Retry-After`` wins when longer.

    Full jitter (a random delay between half and all of the exponential bound) spreads the retries
    of many runs that failed together in a 5xx storm, so they do not come back as one wave.
    """
    bound = min(maximum, base * (2 ** max(attempt - 1, 0)))
    delay = random.uniform(bound / 2, bound)
    if retry_after is not None:
        delay = max(delay, min(retry_after, maximum))
    return delay
