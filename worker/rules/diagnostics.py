"""Diagnostics: what is wrong with a rule file, where, and what to do about it.

Printed the way compilers print them, so editors and CI annotate the right line::

    rules/closing.yaml:12:9: error: unknown field 'stauts' on matters (hint: did you mean 'status'?)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in a rule file. ``line`` and ``column`` are 1-based."""

    file: str
    line: int
    column: int
    message: str
    severity: Severity = "error"
    hint: str | None = None
    rule: str | None = None
    code: str = "rule"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def format(self) -> str:
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}{hint}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return self.format()


def count(diagnostics: list[Diagnostic]) -> tuple[int, int]:
    """(errors, warnings)."""
    errors = sum(1 for d in diagnostics if d.is_error)
    return errors, len(diagnostics) - errors
