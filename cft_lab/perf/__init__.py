"""Benchmark scripts that print figures: ``python -m cft_lab.perf.<name> --help``."""
