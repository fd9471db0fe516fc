"""Benchmarks: each script prints figures measured on this machine."""
