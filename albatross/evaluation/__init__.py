"""Retrieval quality on BEIR-layout datasets: the reader, the metrics, a BM25 baseline and ``albatross eval``."""
