"""The actions tests use the stub servers of tests/fixtures/stubs.py (loaded in tests/conftest.py)."""
