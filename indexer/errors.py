"""Typed errors of the Albatross domain.

Every error a caller can act on is one of these, raised where the fact is known and translated
to a gRPC status code (in ``searcher.errors``) or a CLI exit code in exactly one place::

    AlbatrossError
    ├── InvalidArgument            bad input from the caller          -> INVALID_ARGUMENT
    │   ├── InvalidDocument        one record: names record and field
    │   ├── InvalidFilter          a metadata filter that cannot be compiled
    │   └── InvalidCollectionSpec  pooling / index spec / window that makes no sense
    ├── CollectionNotFound                                            -> NOT_FOUND
    ├── CollectionExists                                              -> ALREADY_EXISTS
    ├── ModelNotFound              a model folder or id that is not available locally -> FAILED_PRECONDITION
    ├── EmbeddingSpaceMismatch     vectors of another space offered to a collection -> FAILED_PRECONDITION
    ├── IndexNotReady              the index cannot answer yet                      -> UNAVAILABLE
    ├── StoreBusy                  the database stayed locked past the busy timeout -> UNAVAILABLE
    ├── Overloaded                 a bounded queue is full                          -> RESOURCE_EXHAUSTED
    └── SnapshotCorrupt            a snapshot file failed to load (fall back to SQL)
"""

from __future__ import annotations


class AlbatrossError(Exception):
    """Base of every error Albatross raises on purpose."""


class InvalidArgument(AlbatrossError):
    """The caller sent something that cannot be accepted; ``field`` names what was wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidDocument(InvalidArgument):
    """One input record is unusable. ``record`` locates it (``file:line`` or the external id)."""

    def __init__(self, message: str, *, record: str, field: str | None = None) -> None:
        super().__init__(f"{record}: {message}", field=field)
        self.record = record


class InvalidFilter(InvalidArgument):
    """A metadata filter that cannot be compiled."""


class InvalidCollectionSpec(InvalidArgument):
    """A collection specification that makes no sense (pooling, index spec, window/stride...)."""


class CollectionNotFound(AlbatrossError):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist")
        self.name = name


class CollectionExists(AlbatrossError):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} already exists")
        self.name = name


class ModelNotFound(AlbatrossError):
    """A model folder or hub id that is not available locally (Albatross never downloads)."""


class EmbeddingSpaceMismatch(AlbatrossError):
    """Vectors or an encoder of another embedding space were offered to a collection."""


class IndexNotReady(AlbatrossError):
    """The index of a collection cannot answer yet."""


class StoreBusy(AlbatrossError):
    """The database stayed locked (another writer) past the busy timeout."""


class Overloaded(AlbatrossError):
    """A bounded queue is full; the caller should retry later."""


class SnapshotCorrupt(AlbatrossError):
    """A snapshot file could not be read back; the index is rebuilt from SQL instead."""
