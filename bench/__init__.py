"""Benchmarks of birdwatch against a naive baseline and this machine's limits.

Run all scenarios with `make bench`, one with `python -m bench SCENARIO`; results (JSON and PNG)
go to `bench/out/`. See docs/PERFORMANCE.md for the method and the figures.
"""
