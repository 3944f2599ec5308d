"""Fixtures for the actions tests; the stub servers come from tests/fixtures/stubs.py."""

from __future__ import annotations

from tests.fixtures.stubs import slack_stub, stub_server

__all__ = ["slack_stub", "stub_server"]
