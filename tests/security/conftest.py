"""The security suite runs the worker the way the fault suite does (``ppw run`` as a child process,
the sandbox over HTTP, stub receivers); its fixtures are shared from ``tests/chaos/conftest.py``."""

from tests.chaos.conftest import chaos_factory
from tests.fixtures.stubs import stub_server

__all__ = ["chaos_factory", "stub_server"]
