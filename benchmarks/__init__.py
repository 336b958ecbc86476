"""Benchmarks run by hand from a checkout (`leaf-dagster bench`, `make bench` or `python -m benchmarks.<name>` from
the repository root); not shipped in the wheel and not part of the test suite."""
