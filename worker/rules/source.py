"""Reading a rule file: YAML into plain Python data, with the file position of every node kept.

ruamel.yaml's round-trip loader records the line and column of every key and value (``.lc``); this
module copies them into a :class:`SourceMap` keyed by the node's path (``("steps", 0, "with",
"text")``) and hands back plain ``dict``/``list``/``str`` data, so the pydantic model and the engine
never see ruamel types, while every later error can still point at the offending node.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from worker.rules.diagnostics import Diagnostic

Path_ = tuple[str | int, ...]
Position = tuple[int, int]  # 0-based line, column


@dataclass
class SourceMap:
    """Positions of the nodes of one YAML document, by path. Lines and columns are 0-based."""

    file: str
    lines: list[str]
    values: dict[Path_, Position] = field(default_factory=dict)
    keys: dict[Path_, Position] = field(default_factory=dict)
    block: dict[Path_, str] = field(default_factory=dict)  # path -> "literal" | "folded"
    warnings: list[Diagnostic] = field(default_factory=list)

    def value(self, path: Path_) -> Position:
        """Where the node at ``path`` starts (its nearest known ancestor when unknown)."""
        probe = tuple(path)
        while probe and probe not in self.values:
            probe = probe[:-1]
        return self.values.get(probe, (0, 0))

    def key(self, path: Path_) -> Position:
        """Where the key of the mapping entry at ``path`` is written (else the value's position)."""
        return self.keys.get(tuple(path)) or self.value(path)

    def template_position(self, path: Path_, template_line: int, needle: str | None) -> Position:
        """The file position of line ``template_line`` (1-based) of the template at ``path``.

        Block scalars (``|``, ``>``) start on the line after the indicator; other scalars start
        where the value does. ``needle`` (the offending name) is looked for from that line on, within
        the scalar, so the column points at it rather than at the start of the template (folded and
        multi-line plain scalars do not keep Jinja's line numbers, hence the search).
        """
        start, column = self.value(path)
        block = tuple(path) in self.block
        line = start + template_line if block else start + template_line - 1
        if template_line > 1 or block:
            column = 0
        line = min(line, max(len(self.lines) - 1, 0))
        if needle:
            for probe in range(line, min(line + 50, len(self.lines))):
                if probe > line and self._left_scalar(probe, start):
                    break
                found = self.lines[probe].find(needle, column if probe == line else 0)
                if found >= 0:
                    return probe, found
            found = self.lines[line].find(needle) if self.lines else -1
            if found >= 0:
                return line, found
        text = self.lines[line] if self.lines else ""
        if block or column == 0:
            return line, len(text) - len(text.lstrip())
        return line, column

    def _left_scalar(self, line: int, start: int) -> bool:
        """Whether ``line`` is past the scalar that starts at line ``start`` (dedented to or past the
        key's indentation)."""
        text = self.lines[line]
        if not text.strip():
            return False
        key_line = self.lines[start]
        key_indent = len(key_line) - len(key_line.lstrip())
        return len(text) - len(text.lstrip()) <= key_indent

    def diagnostic(
        self,
        path: Path_,
        message: str,
        *,
        hint: str | None = None,
        severity: str = "error",
        rule: str | None = None,
        at_key: bool = False,
        position: Position | None = None,
        code: str = "rule",
    ) -> Diagnostic:
        line, column = position or (self.key(path) if at_key else self.value(path))
        return Diagnostic(
            file=self.file,
            line=line + 1,
            column=column + 1,
            message=message,
            severity="warning" if severity == "warning" else "error",
            hint=hint,
            rule=rule,
            code=code,
        )


@dataclass
class Document:
    """One parsed file: plain data, positions, or the syntax error that stopped parsing."""

    file: str
    data: Any
    source: SourceMap
    error: Diagnostic | None = None


def _swallowed_text(node: CommentedMap, key: Any, value: str, path: Path_, source: SourceMap) -> None:
    """Warn when `` #word`` right after a plain value was probably meant as text, not a comment
    (``description: a note to #billing`` loses ``#billing ...`` to YAML's comment rule)."""
    entry = node.ca.items.get(key)
    token = entry[2] if entry and len(entry) > 2 else None
    text = getattr(token, "value", "") or ""
    if not text.startswith("#") or len(text) < 2 or text[1].isspace():
        return
    line = getattr(getattr(token, "start_mark", None), "line", None)
    column = getattr(getattr(token, "start_mark", None), "column", None)
    if line is None or column is None or line >= len(source.lines):
        return
    if source.lines[line][:column].endswith("  ") or not source.lines[line][:column].rstrip().endswith(
        value[-1:]
    ):
        return
    source.warnings.append(
        source.diagnostic(
            path,
            f"the text from {text.strip()[:30]!r} on is a YAML comment: the value ends at {value[-20:]!r}",
            hint="quote the whole value if '#...' belongs to it",
            severity="warning",
            position=(line, column),
            code="yaml",
        )
    )


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _position(mark: Any) -> Position:
    line, column = mark
    return int(line), int(column)


def _plain(node: Any, path: Path_, source: SourceMap) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            try:
                source.keys[child] = _position(node.lc.key(key))
                source.values[child] = _position(node.lc.value(key))
            except (KeyError, TypeError, AttributeError):  # merged (<<:) keys have no own marks
                source.values.setdefault(child, source.value(path))
            out[str(key)] = _plain(value, child, source)
            if isinstance(value, str) and type(value) is str:
                _swallowed_text(node, key, value, child, source)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for index, value in enumerate(node):
            child = (*path, index)
            try:
                source.values[child] = _position(node.lc.item(index))
            except (KeyError, TypeError, AttributeError):
                source.values.setdefault(child, source.value(path))
            items.append(_plain(value, child, source))
        return items
    if isinstance(node, LiteralScalarString):
        source.block[path] = "literal"
        return str(node)
    if isinstance(node, FoldedScalarString):
        source.block[path] = "folded"
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, dt.datetime | dt.date):
        return node.isoformat()
    if isinstance(node, Mapping):
        return {str(k): _plain(v, (*path, str(k)), source) for k, v in node.items()}
    if isinstance(node, Sequence):
        return [_plain(v, (*path, i), source) for i, v in enumerate(node)]
    return node


def parse(text: str, file: str) -> Document:
    """Parse one YAML document; a syntax error comes back as a diagnostic, never raised."""
    source = SourceMap(file=file, lines=text.splitlines())
    try:
        raw = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line, mark.column) if mark is not None else (0, 0)
        problem = str(exc.problem or exc.context or "invalid YAML").strip()
        hint: str | None
        if "duplicate key" in problem:
            hint = "each key may appear once per mapping"
        elif "\t" in (source.lines[line] if line < len(source.lines) else ""):
            hint = "YAML indentation must use spaces, not tabs"
        else:
            hint = _yaml_hint(problem, str(exc.context or ""))
        opened = exc.context_mark
        context = str(exc.context or "")
        unclosed = any(word in context for word in ("parsing", "scanning"))
        if opened is not None and mark is not None and opened.line != mark.line and unclosed:
            started = f"{context.strip()} started at line {opened.line + 1}"
            hint = f"{hint}; {started}" if hint else started
        error = source.diagnostic(
            (), f"YAML syntax: {problem}", hint=hint, position=(line, column), code="yaml"
        )
        return Document(file=file, data=None, source=source, error=error)
    except YAMLError as exc:
        error = source.diagnostic((), f"YAML syntax: {exc}", code="yaml")
        return Document(file=file, data=None, source=source, error=error)
    source.values[()] = (raw.lc.line, raw.lc.col) if isinstance(raw, CommentedMap | CommentedSeq) else (0, 0)
    data = _plain(raw, (), source)
    return Document(file=file, data=data, source=source)


def _yaml_hint(problem: str, context: str | None) -> str:
    text = f"{problem} {context or ''}"
    if "mapping values are not allowed" in text:
        return "quote the value when it contains ': ' (e.g. a Jinja condition or a message)"
    if "found character '\\t'" in text:
        return "YAML indentation must use spaces, not tabs"
    if "flow sequence" in text or "flow mapping" in text:
        return "a value starting with '[' or '{' is read as a list or mapping; quote it"
    if "found undefined alias" in text:
        return "the *alias refers to an &anchor that is not defined above it"
    if "expected <block end>" in text:
        return "check the indentation of this line against its siblings"
    return "check the indentation and quoting around this line"


def read(path: Path, display: str | None = None) -> Document:
    """Parse the file at ``path`` (shown in diagnostics as ``display``)."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        source = SourceMap(file=name, lines=[])
        return Document(
            file=name, data=None, source=source, error=source.diagnostic((), f"cannot read file: {exc}")
        )
    return parse(text, name)


def load_data(path: Path) -> Any:
    """Plain data from a JSON or YAML file (sample records and events)."""
    yaml = YAML(typ="safe")
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle)
    return _plain(data, (), SourceMap(file=str(path), lines=[]))
