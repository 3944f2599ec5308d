"""Faults the sandbox can inject, so clients can be tested against a misbehaving service.

Persistent faults (a rate or a value that stays until changed):

``rate_429``       fraction of API calls answered 429 with ``Retry-After`` (0..1)
``retry_after``    seconds announced in ``Retry-After`` (default 1)
``rate_5xx``       fraction of API calls answered 500/502/503
``latency``        seconds added to every API call
``clock_skew``     seconds added to the server clock for the timestamps it writes
``page_mutation``  on a listing's later page (``$skip`` > 0): a fraction (< 1) or count (>= 1)
                   of the records earlier pages returned are modified first, so they move
``refuse_select``  ``true``/``1``: a listing (or ``$count``) with ``$select`` answers 400 with
                   an OData message, as a service that does not support it would (API-FACTS
                   calls ``$select`` support on the live service uncertain); ``false``/``0`` off
``empty_listings`` a resource name, a comma list of them (any spelling ``resolve_name``
                   takes: ``timeentries``) or ``*``: their list endpoints answer 200 ``[]`` and
                   ``$count`` 0 while GET by id still works (an outage or a permission change a
                   client must not read as "everything was deleted"); ``""`` off

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

from worker.practicepanther import resources

NUMERIC = ("rate_429", "retry_after", "rate_5xx", "latency", "clock_skew", "page_mutation")
PERSISTENT = (*NUMERIC, "refuse_select", "empty_listings")
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
    refuse_select: bool = False
    empty_listings: str = ""  # canonical resource names, comma separated, or "*"


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


def parse_flag(name: str, value: Any) -> bool:
    """``true``/``false``, ``1``/``0`` (numbers or strings), ``on``/``off``, ``yes``/``no``."""
    text = str(value).strip().lower() if not isinstance(value, bool) else str(value).lower()
    if text in ("true", "1", "1.0", "on", "yes"):
        return True
    if text in ("false", "0", "0.0", "off", "no", ""):
        return False
    raise FaultError(f"fault {name} is true or false (1 or 0), got {value!r}")


def parse_resources(name: str, value: Any) -> str:
    """``"matters"``, ``"matters, tasks"``, ``["matters"]``, ``"*"`` -> canonical names or ``*``.

    ``""``, ``null``, ``false`` and ``0`` clear the fault; an unknown resource is a ``FaultError``.
    """
    if value is None or value is False or str(value).strip().lower() in ("", "0", "false", "off", "none"):
        return ""
    parts = value if isinstance(value, list) else str(value).split(",")
    wanted = [str(part).strip() for part in parts if str(part).strip()]
    if "*" in wanted:
        return "*"
    names: list[str] = []
    for part in wanted:
        resolved = resources.resolve_name(part)
        if resolved is None:
            raise FaultError(f"fault {name}: unknown resource {part!r}")
        if resolved not in names:
            names.append(resolved)
    return ",".join(names)


class Faults:
    """The current fault settings and the dice they are rolled with (seeded: runs repeat)."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self.settings = FaultSettings()
        self._random = random.Random(seed)

    @staticmethod
    def check(name: str, value: Any) -> Any:
        """The value a persistent fault ``name`` would take; ``FaultError`` when it cannot."""
        if name not in PERSISTENT:
            raise FaultError(f"unknown fault {name!r}; known faults: {', '.join(FAULT_NAMES)}")
        if name == "refuse_select":
            return parse_flag(name, value)
        if name == "empty_listings":
            return parse_resources(name, value)
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
        checked = self.check(name, value)
        with self._lock:
            setattr(self.settings, name, checked)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.settings)

    def refuses_select(self) -> bool:
        with self._lock:
            return self.settings.refuse_select

    def lists_empty(self, resource: str) -> bool:
        """Whether the ``empty_listings`` fault hides every record of ``resource`` from lists."""
        with self._lock:
            names = self.settings.empty_listings
        return names == "*" or resource in names.split(",")

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
