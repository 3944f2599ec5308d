"""The errors step executors raise: transient or permanent, and the quiet stop.

Executors raise :class:`StepError` (usually one of its two shorthands) for every failure they
understand; :mod:`worker.delivery.failures` sorts those and anything else into retry or dead
letter by the :class:`~worker.errors.PpwError` properties, so the retry policy lives in one place.
"""

from __future__ import annotations

from worker.errors import PpwError

__all__ = ["PermanentStepError", "StepError", "StopRun", "TransientStepError"]


class StepError(PpwError):
    """A step failed in a way its executor understood.

    Parameters
    ----------
    message:
        What went wrong, for the run history and the operator; must not carry a secret.
    transient:
        Whether trying again later may succeed.
    retry_after:
        Seconds the far side asked us to wait (``Retry-After``), if it said.
    may_have_applied:
        Whether the far side may have acted although we saw a failure, so a
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
        self._transient = transient
        self._retry_after = retry_after
        self._may_have_applied = may_have_applied

    @property
    def transient(self) -> bool:
        return self._transient

    @property
    def retry_after(self) -> float | None:
        return self._retry_after

    @property
    def may_have_applied(self) -> bool:
        return self._may_have_applied


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


class StopRun(PpwError):
    """A step asks to end the run quietly (``not_found: stop``): later steps are skipped and the
    run counts as succeeded, with this as its reason."""


class WaitUntil(PpwError):
    """A step asks the run to wait until ``due`` (a Unix time): the run is stored as ``waiting``,
    its message ends, and the timer index wakes it then (the ``wait`` step)."""

    def __init__(self, due: float, why: str = "") -> None:
        self.due = due
        self.why = why
        super().__init__(why or f"waiting until {due}")


class CancelRun(PpwError):
    """A step ends the run as ``cancelled`` (a wait's ``unless:`` held, the record is gone):
    not a failure, nothing is retried, later steps are skipped."""
