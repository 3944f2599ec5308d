"""When and how long to wait before trying a PracticePanther request again.

Built on tenacity (a well-kept retry library) rather than a hand-written loop: it gives the
attempt counting, the exponential backoff with jitter and the hooks, and this module adds the
two rules that are specific to us:

* **What may be retried.** Transient errors only (connection problems, 429, 5xx), and for a
  ``POST`` only the ones where PracticePanther certainly did not act: a connection never made, a
  429, a 503. A ``POST`` that timed out after sending, or got a 500, may have created the record;
  sending it again could create it twice, so it is reported instead. Making creates idempotent
  (a marker a retry can look up first) is the actions layer's job.
* **How long to wait.** ``Retry-After`` when PracticePanther sends one (capped, with a little
  jitter so a fleet of workers does not return in lockstep), otherwise exponential backoff with
  full jitter: ``initial * 2**n`` plus up to ``initial`` random, at most ``maximum``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Protocol

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from worker.practicepanther.errors import PracticePantherError, RateLimited

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy", "retry_after", "retryable"]

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def retryable(method: str, error: BaseException) -> bool:
    """Whether ``error`` from a ``method`` request may be retried without risking a double write."""
    if not isinstance(error, PracticePantherError) or not error.transient:
        return False
    return method.upper() in IDEMPOTENT_METHODS or not error.may_have_applied


class _RetryAfterOrBackoff(wait_base):
    def __init__(self, initial: float, maximum: float, retry_after_cap: float) -> None:
        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self.retry_after_cap = retry_after_cap

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            wait = min(max(error.retry_after, 0.0), self.retry_after_cap)
            return wait + random.uniform(0, wait * 0.1)
        return float(self.backoff(retry_state))


class RetryPolicy:
    """Retry settings for one client; :meth:`for_method` gives a fresh tenacity ``Retrying``.

    Parameters
    ----------
    max_retries:
        Retries after the first attempt (``PPW_MAX_RETRIES``); 0 disables retrying.
    initial, maximum:
        Backoff bounds in seconds.
    retry_after_cap:
        The longest ``Retry-After`` honoured; a larger one is cut to this.
    sleep:
        How to wait (tests and async callers may swap it).
    """

    def __init__(
        self,
        max_retries: int,
        *,
        initial: float = 0.5,
        maximum: float = 30.0,
        retry_after_cap: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_retries = max(0, max_retries)
        self.wait = _RetryAfterOrBackoff(initial, maximum, retry_after_cap)
        self.sleep = sleep

    def for_method(self, method: str) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self.wait,
            retry=retry_if_exception(lambda error: retryable(method, error)),
            before_sleep=_log_retry,
            reraise=True,
            sleep=self.sleep,
        )


def _log_retry(retry_state: RetryCallState) -> None:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    log.warning(
        "PracticePanther call failed (%s); retry %d in %.1f s",
        error,
        retry_state.attempt_number,
        retry_state.upcoming_sleep,
    )


class _Answer(Protocol):
    """An HTTP answer of any client (httpx for PracticePanther, urllib3 for deliveries)."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def retry_after(response: _Answer) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent or garbled."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
