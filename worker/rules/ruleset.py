"""A loaded rule (with where it came from and its version), a rule that did not load, and the set
of rules in force."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from worker.rules.diagnostics import Diagnostic
from worker.rules.model import Rule
from worker.rules.source import Path_, SourceMap


def version_of(data: Any) -> str:
    """The content hash of a rule's own definition: changes when (and only when) the rule does."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class LoadedRule:
    """A validated rule, the file it came from and its version.

    ``base`` is the rule's path inside its file (``()`` when the file holds one mapping, ``(2,)``
    for the third rule of a list); paths given to :meth:`position` are relative to it.
    """

    rule: Rule
    file: str
    base: Path_
    version: str
    source: SourceMap = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.rule.id

    def position(self, *path: str | int) -> tuple[int, int]:
        """1-based (line, column) of a node of this rule."""
        line, column = self.source.value((*self.base, *path))
        return line + 1, column + 1

    @property
    def location(self) -> str:
        line, column = self.position()
        return f"{self.file}:{line}:{column}"


@dataclass(frozen=True)
class BrokenRule:
    """A rule that did not load, with its errors (never empty), so each bad rule is reported, counted
    and, on a hot reload, replaced by its last good version on its own.

    ``rule`` is its id, or None when it has no usable one, or when the whole file could not be read
    or parsed (then nothing is known about the rules in it). ``kept`` names the rules whose last good
    version stays in force because of this failure (hot reload only).
    """

    rule: str | None
    errors: tuple[Diagnostic, ...]
    kept: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        """``file:line:column`` of its first error."""
        first = self.errors[0]
        return f"{first.file}:{first.line}:{first.column}"

    def summary(self) -> str:
        """One line for operators: ``rules/x.yaml:14:9 (rule-id): the first error's message``."""
        name = f" ({self.rule})" if self.rule else ""
        more = f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return f"{self.location}{name}: {self.errors[0].message}{more}"

    def to_dict(self) -> dict[str, Any]:
        first = self.errors[0]
        return {
            "rule": self.rule,
            "file": first.file,
            "line": first.line,
            "column": first.column,
            "message": first.message,
            "errors": len(self.errors),
            "kept": list(self.kept),
        }


@dataclass(frozen=True)
class RuleSet:
    """The rules in force, in file order, plus what was wrong with the rules that were left out.

    ``files`` are the rule files read (also those with no rule in force); ``broken`` the rules (or
    unreadable files) that did not load, each with its errors, in file order.
    """

    rules: tuple[LoadedRule, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    files: tuple[str, ...] = ()
    broken: tuple[BrokenRule, ...] = ()

    @property
    def version(self) -> str:
        """Hash of every rule's id and version: equal sets of rules have equal versions."""
        return version_of(sorted((r.id, r.version) for r in self.rules))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors

    def get(self, rule_id: str) -> LoadedRule | None:
        for loaded in self.rules:
            if loaded.id == rule_id:
                return loaded
        return None

    def __iter__(self) -> Iterator[LoadedRule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)
