"""Faults the sandbox can inject, so clients can be tested against a misbehaving service.

Persistent faults (a rate or a value that stays until changed):

``rate_429``       fraction of API calls answered 429 with ``Retry-After`` (0..1)
``retry_after``    seconds announced in ``Retry-After`` (default 1)
``rate_5xx``       fraction of API calls answered 500/502/503
``latency``        seconds added to every API call
``clock_skew``     seconds added to the server clock for the timestamps it writes
``page_mutation``  on a listing's later page (``$skip`` > 0): a fraction (< 1) or count (>= 1)
                   of the records earlier pages returned are modified first, so they move

Triggers (act once when set):

``expire_tokens``  every access token issued so far expires now (refresh tokens stay valid)
``bulk_update``    ``N`` or ``resource:N`` (or ``{"resource": .., "count": N}``): N records get
                   one identical ``updated_at``

Set at start with ``ppw sandbox --fault name=value`` (repeatable) or ``SandboxConfig.faults``,
and at run time with ``POST /_sandbox/faults``.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass
from typing import Any

PERSISTENT = ("rate_429", "retry_after", "rate_5xx", "latency", "clock_skew", "page_mutation")
TRIGGERS = ("expire_tokens", "bulk_update")
FAULT_NAMES = PERSISTENT + TRIGGERS


class FaultError(ValueError):
    """An unknown fault or a value it cannot take."""


@dataclass
class FaultSettings:
    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_5xx: float = 0.0
    latency: float = 0.0
    clock_skew: float = 0.0
    page_mutation: float = 0.0


def parse_assignment(text: str) -> tuple[str, Any]:
    """``name=value`` from the command line into a fault name and its (string) value."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise FaultError(f"expected name=value, got {text!r}")
    if name not in FAULT_NAMES:
        raise FaultError(f"unknown fault {name!r}; known faults: {', '.join(FAULT_NAMES)}")
    return name, value.strip()


def parse_bulk_update(value: Any) -> tuple[str, int]:
    """``5``, ``"tasks:5"`` or ``{"resource": "tasks", "count": 5}`` -> (resource, count)."""
    resource, count = "matters", value
    if isinstance(value, dict):
        resource, count = str(value.get("resource", "matters")), value.get("count", 0)
    elif isinstance(value, str) and ":" in value:
        resource, count = value.split(":", 1)
    try:
        number = int(count)
    except (TypeError, ValueError):
        raise FaultError(f"bulk_update needs a count, got {value!r}") from None
    if number < 1:
        raise FaultError("bulk_update count must be at least 1")
    return resource.strip(), number


class Faults:
    """The current fault settings and the dice they are rolled with (seeded: runs repeat)."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self.settings = FaultSettings()
        self._random = random.Random(seed)

    @staticmethod
    def check(name: str, value: Any) -> float:
        """The number a persistent fault ``name`` would take; ``FaultError`` when it cannot."""
        if name not in PERSISTENT:
            raise FaultError(f"unknown fault {name!r}; known faults: {', '.join(FAULT_NAMES)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise FaultError(f"fault {name} needs a number, got {value!r}") from None
        if number < 0 and name != "clock_skew":
            raise FaultError(f"fault {name} cannot be negative")
        if name in ("rate_429", "rate_5xx") and number > 1:
            raise FaultError(f"fault {name} is a fraction between 0 and 1")
        return number

    def set(self, name: str, value: Any) -> None:
        """Set a persistent fault; ``FaultError`` for unknown names or bad values."""
        number = self.check(name, value)
        with self._lock:
            setattr(self.settings, name, number)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return asdict(self.settings)

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def choose(self, population: list[Any], count: int) -> list[Any]:
        with self._lock:
            return self._random.sample(population, min(count, len(population)))

    def pick_5xx(self) -> int:
        with self._lock:
            return self._random.choice((500, 502, 503))
