"""Reproducible performance harnesses: ``python -m benchmarks.<name>`` prints JSON results."""
