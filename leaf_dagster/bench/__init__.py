"""Benchmarks run by hand (`python -m leaf_dagster.bench.<name>`), not part of the test suite."""
