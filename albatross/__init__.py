"""Albatross, the application: the ``albatross`` command and what it wires together.

``indexer`` writes (readers, chunking, encoder, SQL store, FAISS index, ingestion) and ``searcher``
answers (servicers, batching, results, router, client); this package sits above both: it parses
flags and environment into one configuration, opens a workspace, and runs a subcommand
(``cli``, ``commands``, ``serving_commands``), including ``albatross eval`` (``evaluation``).
Nothing below imports it.
"""
