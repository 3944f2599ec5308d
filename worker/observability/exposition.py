"""Rendering ``/metrics``, in one process or merged across a forked process tree.

Deliberately free of imports of :mod:`worker.observability.metrics`: the parent of a process tree
must empty ``PROMETHEUS_MULTIPROC_DIR`` *before* any metric exists, or it would delete the files its
own metrics were just mapped to.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """The directory of shared metric files, or None when metrics are per process."""
    value = os.environ.get(ENV_VAR)
    return Path(value) if value else None


def prepare_multiprocess_dir() -> Path | None:
    """Create the shared directory and delete files left by a previous run.

    Call once in the parent process, before it imports the metrics and before it starts children;
    stale files would otherwise add the last run's counts to this one.
    """
    path = multiprocess_dir()
    if path is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def mark_process_dead(pid: int) -> None:
    """Drop a dead child's ``live*`` gauges (call from the parent when a worker process exits)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


def render(accept: str = "") -> tuple[bytes, str]:
    """The metrics page body and content type for a request's ``Accept`` header.

    Prometheus text by default, OpenMetrics when the scraper asks for it.
    """
    encoder, content_type = choose_encoder(accept)
    return encoder(collecting_registry()), content_type


def collecting_registry() -> CollectorRegistry:
    """The registry to read metrics from: this process's, or one merging the process tree's."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))
    return registry
