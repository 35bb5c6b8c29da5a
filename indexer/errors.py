"""Typed errors of the Albatross domain, and the one table that says what each one becomes.

Every error a caller can act on is one of these, raised where the fact is known. ``FAILURES`` below
is the only mapping from an error to the gRPC status a server answers with (``searcher.errors``)
and to the exit code of the ``albatross`` command (``albatross.exit_codes``); a CLI that gets a
status from a server exits with the code of that status's row, so the three agree by construction::

    AlbatrossError
    ├── InvalidArgument            bad input from the caller; ``field`` names what was wrong
    │   ├── InvalidDocument        one record: names record and field
    │   ├── InvalidFilter          a metadata filter that cannot be compiled
    │   └── InvalidCollectionSpec  pooling / index spec / window that makes no sense
    ├── CollectionNotFound
    ├── CollectionExists
    ├── ModelNotFound              a model folder or id that is not available locally
    ├── EmbeddingSpaceMismatch     vectors of another space offered to a collection
    ├── IndexNotReady              the index cannot answer yet
    ├── StoreBusy                  the database stayed locked past the busy timeout
    ├── LexicalIndexBusy           another writer holds a lexical index folder (served from memory)
    ├── StoreUnavailable           the database cannot be reached or written
    ├── ShardUnavailable           no replica of a shard answered (router)
    ├── MixedWhiteningVersions     shards answered in two whitening maps, mid-refit (router)
    ├── Overloaded                 a bounded queue is full
    └── SnapshotCorrupt            a snapshot file failed to load (the index falls back to SQL)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


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


class LexicalIndexBusy(AlbatrossError):
    """Another writer (in this or another process) holds a lexical index folder's lock."""


class StoreUnavailable(AlbatrossError):
    """The database cannot be reached or written: no server listening, a read-only or forbidden
    file or folder. The message names the URL (password hidden) or the path."""


class ShardUnavailable(AlbatrossError):
    """No replica of a shard answered; ``shard`` names it (``shard 1 (host:port|host:port)``)."""

    # In every message, so a client of the router can tell it from a router it cannot reach.
    SAYS = "no live replica"

    def __init__(self, shard: str, reasons: str) -> None:
        super().__init__(f"{shard}: {self.SAYS} ({reasons})")
        self.shard = shard


class MixedWhiteningVersions(AlbatrossError):
    """Shards answered one query in different versions of the collection's whitening map, and
    asking their replicas again did not bring them to one (docs/OPERATIONS.md, "A refit behind a
    router"). ``versions`` maps each shard's name to the versions its answer was ranked in.

    UNAVAILABLE, not FAILED_PRECONDITION: the state is transient and ends on its own once every
    shard has rebuilt in the new map; the caller has nothing to fix, and the same request retried
    a little later succeeds, which is what UNAVAILABLE tells gRPC clients and retry policies."""

    # In every message, so ``albatross search`` can tell it from a server it cannot reach.
    SAYS = "shards answered in different whitening versions"

    def __init__(self, collection: str, versions: dict[str, tuple[int, ...]]) -> None:
        said = ", ".join(f"{shard}: {'/'.join(map(str, seen))}" for shard, seen in versions.items())
        super().__init__(
            f"collection {collection!r}: {self.SAYS} ({said}), a refit is rolling out; retry shortly"
        )
        self.collection = collection
        self.versions = versions


class Overloaded(AlbatrossError):
    """A bounded queue is full; the caller should retry later."""


class SnapshotCorrupt(AlbatrossError):
    """A snapshot file could not be read back; the index is rebuilt from SQL instead."""


class ExitCode(IntEnum):
    """Exit codes of the ``albatross`` command (README, "Exit codes")."""

    OK = 0
    REJECTED = 1  # some input records were rejected; every other record was committed
    INVALID = 2
    NOT_FOUND = 3
    PRECONDITION = 4
    UNAVAILABLE = 5
    INTERNAL = 70
    INTERRUPTED = 130


@dataclass(frozen=True)
class Failure:
    """One kind of failure: its gRPC status (by name: ``indexer`` never imports grpc), its exit
    code, and the error classes of that kind (none for statuses only the transport produces)."""

    status: str
    exit_code: ExitCode
    errors: tuple[type[AlbatrossError], ...] = ()


# The one table. A status appears in one row only, so a status alone also gives the exit code.
FAILURES: tuple[Failure, ...] = (
    Failure("INVALID_ARGUMENT", ExitCode.INVALID, (InvalidArgument,)),
    Failure("NOT_FOUND", ExitCode.NOT_FOUND, (CollectionNotFound,)),
    Failure("ALREADY_EXISTS", ExitCode.INVALID, (CollectionExists,)),
    Failure("FAILED_PRECONDITION", ExitCode.PRECONDITION, (ModelNotFound, EmbeddingSpaceMismatch)),
    Failure(
        "UNAVAILABLE",
        ExitCode.UNAVAILABLE,
        (
            IndexNotReady,
            StoreBusy,
            LexicalIndexBusy,
            StoreUnavailable,
            ShardUnavailable,
            MixedWhiteningVersions,
        ),
    ),
    Failure("RESOURCE_EXHAUSTED", ExitCode.UNAVAILABLE, (Overloaded,)),
    Failure("INTERNAL", ExitCode.INTERNAL, (SnapshotCorrupt,)),
    # Only the transport answers these; for ``albatross search`` a wrong token is a bad argument.
    Failure("DEADLINE_EXCEEDED", ExitCode.UNAVAILABLE),
    Failure("UNAUTHENTICATED", ExitCode.INVALID),
)
INTERNAL = next(failure for failure in FAILURES if failure.status == "INTERNAL")


def failure_of(error: BaseException) -> Failure:
    """The row of ``error``'s class (or its nearest ancestor in the table); INTERNAL for anything
    that is not an ``AlbatrossError`` (a bug)."""
    for cls in type(error).__mro__:
        for failure in FAILURES:
            if cls in failure.errors:
                return failure
    return INTERNAL


def failure_of_status(status: str) -> Failure:
    """The row of a gRPC status name; INTERNAL for a status no row names."""
    return next((failure for failure in FAILURES if failure.status == status), INTERNAL)
