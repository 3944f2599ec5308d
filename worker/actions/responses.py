"""Turning HTTP answers and failures from Slack and webhook receivers into step errors."""

from __future__ import annotations

from worker.actions.errors import PermanentStepError, StepError, TransientStepError
from worker.actions.outbound import Reply, TransportFailure
from worker.practicepanther.retry import retry_after

__all__ = ["PREVIEW", "TRANSIENT_STATUSES", "preview", "retry_after", "status_error", "transport_error"]

#: Statuses worth another try: the receiver is overloaded, restarting or rate limiting us.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
PREVIEW = 300


def preview(response: Reply) -> str:
    """The start of a response body for an error message (receivers' bodies are not secret)."""
    text = response.text.strip().replace("\n", " ")
    return text[:PREVIEW] + ("..." if len(text) > PREVIEW else "")


def status_error(what: str, response: Reply, detail: str | None = None) -> StepError:
    """The step error for a non-2xx answer: transient for 408/425/429/5xx, permanent otherwise."""
    said = detail if detail is not None else preview(response)
    message = f"{what} answered {response.status_code}" + (f": {said}" if said else "")
    if response.status_code in TRANSIENT_STATUSES:
        # a 5xx (except 503) may come after the receiver acted
        applied = response.status_code >= 500 and response.status_code != 503
        return TransientStepError(message, retry_after=retry_after(response), may_have_applied=applied)
    return PermanentStepError(message)


def transport_error(what: str, exc: TransportFailure) -> StepError:
    """Timeouts and connection failures: transient; a read timeout may have reached the receiver."""
    return TransientStepError(f"{what} failed: {exc.kind}", may_have_applied=exc.sent)
