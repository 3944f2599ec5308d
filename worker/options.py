"""Options objects built from :class:`~worker.settings.Settings`, whose defaults are declared there.

A frozen options dataclass (``DeliveryOptions``, ``TriggerOptions``, ``PollOptions``,
``BrokerOptions``) names the settings it takes with :func:`setting` instead of repeating their
defaults; :func:`options_from` builds one from a ``Settings``::

    @dataclass(frozen=True)
    class Knobs:
        lease: float = setting("run_lease")
        retention: float = setting("run_retention_days", lambda days: days * DAY)
        batch: int = 10  # not a setting: a plain default

    Knobs()                        # Settings' defaults (converted)
    options_from(Knobs, settings)  # the configured values (converted)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from worker.settings import Settings

T = TypeVar("T")

_SETTING = "setting"
_CONVERT = "convert"


def setting(name: str, convert: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field taking ``Settings.<name>`` (through ``convert``), defaulting to its default.

    The default is read from ``Settings.model_fields`` (and converted) each time an instance is
    built without that field, so it is declared once, in :class:`~worker.settings.Settings`.
    """
    if name not in Settings.model_fields:
        raise KeyError(f"Settings has no field {name!r}")

    def default() -> Any:
        value = Settings.model_fields[name].get_default(call_default_factory=True)
        return convert(value) if convert is not None else value

    return dataclasses.field(default_factory=default, metadata={_SETTING: name, _CONVERT: convert})


def setting_name(field: dataclasses.Field[Any]) -> str | None:
    """The name of the setting a field takes, or None for a field with a plain default."""
    name = field.metadata.get(_SETTING)
    return name if isinstance(name, str) else None


def options_from(cls: type[T], settings: Settings, **values: Any) -> T:
    """``cls`` with every :func:`setting` field read from ``settings``; ``values`` set other fields."""
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = setting_name(field)
        if name is None or field.name in values:
            continue
        convert = field.metadata[_CONVERT]
        value = getattr(settings, name)
        values[field.name] = convert(value) if convert is not None else value
    return cls(**values)
