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

from worker.observability.scrub import scrub_text
from worker.state.base import StateError


class StepError(Exception):
    """A step failed in a way its executor understood.

    Parameters:
      message: what went wrong, for the run history and the operator; must not carry a secret.
      transient: whether trying again later may succeed.
      retry_after: seconds the far side asked us to wait (``Retry-After``), if it said.
      may_have_applied: whether the far side may have acted although we saw a failure, so a
        retry must first look for the effect of this attempt.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
        may_have_applied: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.retry_after = retry_after
        self.may_have_applied = may_have_applied


class PermanentStepError(StepError):
    """Retrying cannot help: the rule, its parameters or the destination need a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class TransientStepError(StepError):
    """Retrying later may succeed."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, may_have_applied: bool = False
    ) -> None:
        super().__init__(message, transient=True, retry_after=retry_after, may_have_applied=may_have_applied)


class StopRun(Exception):
    """A step asks to end the run quietly (``not_found: stop``): later steps are skipped and the
    run counts as succeeded, with this as its reason."""


@dataclass(frozen=True)
class Failure:
    """An exception, classified."""

    reason: str
    transient: bool
    retry_after: float | None = None
    kind: str = ""


def classify(exc: BaseException) -> Failure:
    """Sort any exception a step or the runner raised into transient or permanent.

    Errors that carry their own ``transient`` flag (ppw's step errors and PracticePanther client
    errors) are trusted; network failures and state-store outages are transient; anything else
    (a bug, a template error, a bad parameter) is permanent so it reaches a person instead of
    retrying forever.
    """
    kind = type(exc).__name__
    reason = scrub_text(str(exc) or kind)
    transient_flag = getattr(exc, "transient", None)
    if isinstance(transient_flag, bool):
        retry_after = getattr(exc, "retry_after", None)
        return Failure(
            reason=reason,
            transient=transient_flag,
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
            kind=kind,
        )
    if isinstance(exc, httpx.TransportError | StateError | ConnectionError | TimeoutError):
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
