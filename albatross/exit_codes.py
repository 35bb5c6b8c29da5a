"""Exit codes of the ``albatross`` command, derived from the one error table.

0 ok; 1 some input records were rejected (everything else was committed); 2 invalid argument;
3 not found; 4 a model or embedding-space precondition failed; 5 unavailable (database busy or
unreachable, server unreachable); 70 internal error; 130 interrupted. Which error or gRPC status
gives which code is ``indexer.errors.FAILURES``, nowhere else.
"""

from __future__ import annotations

from indexer.errors import ExitCode, failure_of, failure_of_status

EXIT_OK, EXIT_REJECTED, EXIT_INVALID = ExitCode.OK, ExitCode.REJECTED, ExitCode.INVALID
EXIT_NOT_FOUND, EXIT_PRECONDITION, EXIT_UNAVAILABLE = (
    ExitCode.NOT_FOUND,
    ExitCode.PRECONDITION,
    ExitCode.UNAVAILABLE,
)
EXIT_INTERNAL, EXIT_INTERRUPTED = ExitCode.INTERNAL, ExitCode.INTERRUPTED


def exit_code_for(error: BaseException) -> int:
    """The exit code of a run that ended with ``error``."""
    return int(failure_of(error).exit_code)


def exit_code_for_status(status: str) -> int:
    """The exit code of a run whose call to a server ended with gRPC status ``status`` (its name)."""
    return int(failure_of_status(status).exit_code)
