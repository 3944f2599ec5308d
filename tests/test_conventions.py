"""Conventions all of worker/ keeps: one docstring style, and each package's exports complete.

Docstrings use the numpy layout (``Parameters`` underlined with dashes, then ``name:`` and the
description indented below it), as in ``worker/state/base.py``; the Google-ish ``Parameters:`` block
is not used.

Each library package of worker/ lists its public API in ``__all__`` (eager or lazy imports, see
``worker/rules/__init__.py``). As httpx does, the lists are checked against use: a public class or
function that another package imports from ``worker.<package>.<module>`` must be exported by
``worker.<package>``, and every exported name must resolve.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[1] / "worker"

# The library packages. sandbox (a simulator) and commands (the CLI) are not imported as
# libraries; process/ is the process assembly, which only the CLI uses.
PACKAGES = [
    "practicepanther",
    "state",
    "polling",
    "rules",
    "actions",
    "delivery",
    "triggers",
    "observability",
]

_GOOGLE_HEADING = re.compile(r"^[ \t]*Parameters:[ \t]*$", re.M)
_NUMPY_HEADING = re.compile(r"^([ \t]*)Parameters[ \t]*\n([ \t]*)(\S*)", re.M)


def _module_name(path: Path) -> str:
    parts = path.relative_to(WORKER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _trees() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(WORKER.rglob("*.py"))}


def _docstrings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                yield (getattr(node, "lineno", 1), doc)


def test_docstrings_use_the_numpy_parameters_section() -> None:
    wrong = []
    for module, tree in _trees().items():
        for line, doc in _docstrings(tree):
            if _GOOGLE_HEADING.search(doc):
                wrong.append(f"{module}:{line}: 'Parameters:' block (use 'Parameters' and dashes)")
            for heading in _NUMPY_HEADING.finditer(doc):
                indent, underline_indent, underline = heading.groups()
                if (
                    underline_indent != indent
                    or set(underline) != {"-"}
                    or len(underline) < len("Parameters")
                ):
                    wrong.append(f"{module}:{line}: 'Parameters' not underlined with dashes")
    assert not wrong, "\n".join(wrong)


def _defined(tree: ast.Module) -> set[str]:
    """Public classes and functions defined at the top of a module."""
    kinds = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    return {node.name for node in tree.body if isinstance(node, kinds) and not node.name.startswith("_")}


def _imported_from_outside(package: str) -> dict[str, set[str]]:
    """Names other modules of worker/ import from ``worker.<package>.<module>``, with the importers."""
    prefix = f"worker.{package}"
    trees = _trees()
    used: dict[str, set[str]] = {}
    for importer, tree in trees.items():
        if importer == prefix or importer.startswith(prefix + "."):
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            source = node.module
            if not source.startswith(prefix + ".") or source.rsplit(".", 1)[1].startswith("_"):
                continue
            defined = _defined(trees[source]) if source in trees else set()
            for alias in node.names:
                if alias.name in defined:
                    used.setdefault(alias.name, set()).add(importer)
    return used


def _exports(package: str) -> list[str]:
    module = importlib.import_module(f"worker.{package}")
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"worker.{package} has no __all__"
    return list(exported)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_exists(package: str) -> None:
    exported = _exports(package)
    assert len(exported) == len(set(exported)), f"worker.{package}.__all__ repeats a name"
    module = importlib.import_module(f"worker.{package}")
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"worker.{package}.__all__ names what it does not have: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_names_other_packages_import_are_exported(package: str) -> None:
    exported = set(_exports(package))
    used = _imported_from_outside(package)
    missing = {name: sorted(users) for name, users in sorted(used.items()) if name not in exported}
    assert not missing, f"worker.{package}.__all__ lacks names other packages import: {missing}"
