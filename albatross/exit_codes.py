"""Exit codes of the ``albatross`` command and the one mapping from domain errors to them.

0 ok; 1 some input records were rejected (everything else was committed); 2 invalid argument;
3 not found; 4 a model or embedding-space precondition failed; 5 unavailable (database busy,
server unreachable); 70 internal error.
"""

from __future__ import annotations

from indexer.errors import (
    CollectionExists,
    CollectionNotFound,
    EmbeddingSpaceMismatch,
    IndexNotReady,
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    StoreBusy,
)

EXIT_OK, EXIT_REJECTED, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_PRECONDITION, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5
EXIT_INTERNAL = 70


def exit_code_for(error: BaseException) -> int:
    """The one mapping from domain errors to exit codes."""
    if isinstance(error, InvalidArgument):
        return EXIT_INVALID
    if isinstance(error, CollectionNotFound | CollectionExists):
        return EXIT_NOT_FOUND if isinstance(error, CollectionNotFound) else EXIT_INVALID
    if isinstance(error, ModelNotFound | EmbeddingSpaceMismatch):
        return EXIT_PRECONDITION
    if isinstance(error, StoreBusy | IndexNotReady | Overloaded):
        return EXIT_UNAVAILABLE
    return EXIT_INTERNAL


