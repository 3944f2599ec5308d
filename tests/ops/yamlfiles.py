"""Reading the deployment YAML the way Compose and kubectl do (merge keys resolved, all documents)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from worker.settings import Settings


def load_all(path: Path) -> list[Any]:
    """Every non-empty document of a YAML file, as plain Python data."""
    return [doc for doc in YAML(typ="safe").load_all(path.read_text(encoding="utf-8")) if doc is not None]


def load(path: Path) -> Any:
    (doc,) = load_all(path)
    return doc


def unknown_settings(names: list[str]) -> list[str]:
    """``PPW_*`` names that no Settings field reads (a typo that would be silently ignored)."""
    fields = {f"PPW_{name.upper()}" for name in Settings.model_fields}
    return [name for name in names if name.startswith("PPW_") and name.split("__", 1)[0] not in fields]
