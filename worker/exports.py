"""Lazy package exports: a package's ``__all__`` names without importing every module behind them.

``ppw --help`` imports one module of several packages; importing a package's whole public API
with it (the HTTP client, token encryption, the runner and its step types) would make every
command start slower. A package lists where each lazy name lives and gets a module
``__getattr__`` (PEP 562) that imports it on first use::

    _LAZY = {"Runner": "worker.delivery.runner"}
    __getattr__ = lazy_exports(__name__, _LAZY)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` resolving each name of ``table`` from its module."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
