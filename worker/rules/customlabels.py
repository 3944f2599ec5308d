"""Custom field labels the loaded rules use, and those the account no longer defines.

A rule names custom fields by label (``changed: custom.Case Stage``, ``record.custom['Case
Stage']``, ``changes['custom.Case Stage']``, ``custom: {Case Stage: ...}`` on a step). When someone
renames the field in PracticePanther, the rule would silently never fire again (the change now
comes as ``custom.Stage``). So each refresh of the definitions (:class:`CustomFieldsWatch`, run by
the poll scheduler's leader) compares the labels in use with the fresh definitions and reports
every one that is missing: a log warning naming the rule, the file and a near label, the gauge
``ppw_custom_field_labels_missing`` per resource, and a report in the state store that
``/readyz`` shows (:func:`read_report`) on every process of the deployment.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from worker.errors import PpwError
from worker.hints import did_you_mean
from worker.practicepanther import customfields
from worker.practicepanther.customfields import Definitions
from worker.rules.ruleset import LoadedRule
from worker.state.base import StateStore, key

if TYPE_CHECKING:
    from worker.practicepanther.client import PracticePantherClient

log = logging.getLogger(__name__)

#: ``custom['Case Stage']`` / ``custom["Case Stage"]`` in a template or condition.
_CUSTOM_ITEM = re.compile(r"""\bcustom\s*\[\s*(['"])(?P<label>.+?)\1\s*\]""")
#: ``'custom.Case Stage'`` (``changes['custom.Case Stage']``) in a template or condition.
_CUSTOM_NAME = re.compile(r"""(['"])custom\.(?P<label>.+?)\1""")


@dataclass(frozen=True)
class MissingLabel:
    """A label ``rule`` uses on ``resource`` that the definitions do not have; ``hint`` is a near
    label (the likely new name) when there is one."""

    rule: str
    file: str
    resource: str
    label: str
    hint: str | None = None

    def describe(self) -> str:
        near = f" ({self.hint})" if self.hint else ""
        return (
            f"rule {self.rule} ({self.file}) uses custom field {self.label!r} on {self.resource}, "
            f"which PracticePanther no longer defines{near}"
        )


def labels_used(loaded: LoadedRule) -> set[tuple[str, str]]:
    """``(resource, label)`` of every custom field the rule names."""
    rule = loaded.rule
    used: set[tuple[str, str]] = set()
    trigger = rule.record_trigger
    watched = trigger.resource if trigger is not None else None
    if trigger is not None:
        for name in trigger.changed:
            label = customfields.custom_label(name)
            if label is not None:
                used.add((trigger.resource, label))
    if watched is not None:
        for text in _texts(rule.conditions, [s.if_ for s in rule.steps], [s.raw_with() for s in rule.steps]):
            for pattern in (_CUSTOM_ITEM, _CUSTOM_NAME):
                used.update((watched, m.group("label")) for m in pattern.finditer(text))
    for step in rule.steps:
        params = step.raw_with()
        custom = params.get("custom")
        resource = params.get("resource")
        if isinstance(custom, dict) and isinstance(resource, str):
            used.update((resource, str(label)) for label in custom)
    return used


def _texts(*values: Any) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            yield from _texts(*value.values())
        elif isinstance(value, list | tuple):
            yield from _texts(*value)
        elif hasattr(value, "model_dump"):
            yield from _texts(value.model_dump(by_alias=True))


def missing_labels(rules: Iterable[LoadedRule], definitions: Definitions) -> list[MissingLabel]:
    """The labels ``rules`` use that ``definitions`` lack (scopes never fetched are skipped)."""
    missing: list[MissingLabel] = []
    for loaded in rules:
        for resource, label in sorted(labels_used(loaded)):
            if not definitions.known(resource) or definitions.by_label(resource, label) is not None:
                continue
            hint = did_you_mean(label, definitions.labels(resource))
            missing.append(MissingLabel(loaded.id, loaded.file, resource, label, hint))
    return missing


def report_key(connection: str) -> str:
    return key(connection, "customfields", "missing")


def read_report(store: StateStore, connection: str) -> dict[str, Any] | None:
    """The last refresh's report (``checked_at``, ``missing``: a list of :class:`MissingLabel`
    fields), or None before the first refresh."""
    raw = store.get(report_key(connection))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class CustomFieldsWatch:
    """Refreshes the definitions and reports labels the rules use that are gone.

    Parameters
    ----------
    store:
        The state store: the definitions' cache and the report live there.
    connection:
        The connection whose account is read.
    client:
        Gives the PracticePanther client of ``connection`` (called on every refresh).
    rules:
        Gives the rules in force (called on every refresh, so a reload is seen).
    """

    def __init__(
        self,
        store: StateStore,
        connection: str,
        client: Callable[[], PracticePantherClient],
        rules: Callable[[], Iterable[LoadedRule]],
    ) -> None:
        self.store = store
        self.connection = connection
        self.client = client
        self.rules = rules

    def refresh(self) -> list[MissingLabel]:
        """Fetch and cache the definitions, then report the missing labels (see the module).

        PracticePanther or the state store failing is logged and the next turn tries again: the
        cached definitions (and the last report) stay as they were.
        """
        try:
            definitions = customfields.refresh(self.client(), self.store, self.connection)
        except PpwError as exc:
            log.warning("could not refresh the custom field definitions: %s", exc)
            return []
        return self.check(definitions)

    def check(self, definitions: Definitions) -> list[MissingLabel]:
        """Report the labels the rules use that ``definitions`` lack; returns them."""
        # lazy: creating the metrics must wait for the multi-process directory
        from worker.observability import metrics

        missing = missing_labels(self.rules(), definitions)
        for item in missing:
            log.warning("%s: the rule cannot see this field until it is updated", item.describe())
        for resource in customfields.SCOPES:
            count = sum(1 for item in missing if item.resource == resource)
            metrics.CUSTOM_FIELD_LABELS_MISSING.labels(resource).set(count)
        report = {
            "checked_at": datetime.now(UTC).isoformat(),
            "missing": [asdict(item) for item in missing],
        }
        self.store.set(report_key(self.connection), json.dumps(report))
        return missing
