"""The sandbox's clock and the timestamp format PracticePanther emits.

PracticePanther writes UTC timestamps without an offset and with milliseconds
(``2026-04-04T10:11:12.345``). Every timestamp the sandbox writes goes through :class:`Clock`, so
the ``clock_skew`` fault can move the server's notion of "now" without touching the host clock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_DATE_ONLY_LENGTH = 10


def format_timestamp(moment: datetime) -> str:
    """``2026-04-04T10:11:12.345``: naive UTC with milliseconds, as the live API emits."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def format_date_value(moment: datetime) -> str:
    """A client-supplied date such as a due date: naive UTC, milliseconds only when present."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text


@lru_cache(maxsize=65536)
def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp into an aware UTC datetime.

    A value without ``Z`` or an offset is read as UTC: the API documents every date as UTC and
    emits them naive. ``ValueError`` when the text is not a timestamp.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def is_date_only(text: str) -> bool:
    """``2026-04-04`` (no time part): range filters then cover the whole day."""
    return len(text.strip()) == _DATE_ONLY_LENGTH


class Clock:
    """UTC "now" plus an adjustable skew, shared by every writer in one sandbox."""

    def __init__(self, skew_seconds: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._skew = timedelta(seconds=skew_seconds)

    @property
    def skew_seconds(self) -> float:
        return self._skew.total_seconds()

    def set_skew(self, seconds: float) -> None:
        with self._lock:
            self._skew = timedelta(seconds=seconds)

    def now(self) -> datetime:
        """The server's current time (aware UTC), truncated to milliseconds like the live API."""
        moment = datetime.now(UTC) + self._skew
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
