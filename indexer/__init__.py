"""Albatross indexer: everything that writes (readers, chunking, encoder, store, index, ingestion)."""
