"""Alembic migrations of the store, run programmatically by ``indexer.store.Store.open``."""
