"""Shared pytest setup: each area keeps its fixtures in ``tests/fixtures/<area>.py``."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.sandbox",
    "tests.fixtures.state",
    "tests.fixtures.client",
    "tests.fixtures.stubs",
]
