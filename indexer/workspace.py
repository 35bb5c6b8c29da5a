"""A workspace: the store, catalog and ingestor over one database, wired from one ``AppConfig``.

Both the command line and the server build their collaborators here, so there is one place that
decides how the pieces fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from indexer.catalog import Catalog, EncoderRegistry
from indexer.config import AppConfig
from indexer.ingest import Ingestor
from indexer.store import Store


@dataclass
class Workspace:
    config: AppConfig
    store: Store
    encoders: EncoderRegistry
    catalog: Catalog
    ingestor: Ingestor

    @classmethod
    def open(cls, config: AppConfig, *, collection_ttl_s: float = 0.0) -> Workspace:
        """``collection_ttl_s``: how long the catalog may remember a collection (``Catalog``)."""
        store = Store.open(config.store)
        encoders = EncoderRegistry(config.encoder, config.default_model)
        catalog = Catalog(store, encoders, info_ttl_s=collection_ttl_s)
        return cls(config, store, encoders, catalog, Ingestor(store, catalog, config.ingest))

    def close(self) -> None:
        self.store.close()
