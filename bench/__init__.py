"""Benchmarks of Albatross: ``python -m bench.ingest``, ``bench.search``, ``bench.index``.

Each run appends its figures, the machine and the exact command to ``bench/RESULTS.md``.
"""
