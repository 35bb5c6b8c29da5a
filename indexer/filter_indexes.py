"""Expression indexes on the metadata fields that filters compare, made on first use.

Without them a filtered search reads every document of its collection to test the filter. With
one, the database reads only the documents that match. There is one index per filtered field
(per field and JSON kind on PostgreSQL, whose number and boolean expressions carry a typed cast),
on ``documents (collection_id, <the value expression>)``. The expression is
``indexer.filters.indexed_expressions``, compiled for the engine's dialect, so it is spelled
exactly as the filter's query spells it: the condition for either database to use the index.

- SQLite: ``json_extract(metadata, '$."field"')``, one index serving strings, numbers and booleans.
- PostgreSQL: a B-tree on ``(metadata ->> 'field')`` for strings, on the guarded
  ``CAST(metadata ->> 'field' AS DOUBLE PRECISION)`` / ``AS BOOLEAN`` for the other kinds. A B-tree
  and not a GIN ``jsonb_path_ops`` index: GIN answers ``@>`` containment (equality) only, and
  ranges are half of what filters ask.

On SQLite ``CREATE INDEX IF NOT EXISTS`` runs in its own short writer transaction. On PostgreSQL
it is ``CREATE INDEX CONCURRENTLY IF NOT EXISTS``, outside any transaction: a plain build holds a
SHARE lock that stops every write to ``documents`` until it is done, minutes on a large collection,
while a concurrent one lets writes through (it waits instead for the transactions already open on
the table). Two concurrent builds on one table deadlock (each waits for the other's transaction to
end), so ours take turns on a session advisory lock per table, polled rather than waited for: a
transaction waiting for it would be one more that a running build waits out. Processes racing to
create the same index therefore both succeed: the second finds it made (a duplicate ``pg_class``
row, should one still occur, is taken as done). A concurrent build that fails part-way (a lock
timeout, a killed process) leaves an INVALID index behind, which ``IF NOT EXISTS`` would take for
the real one and the planner never uses: the next attempt waits out any build still running, then
drops what is still invalid and builds it again. Every wait is under the store's lock timeout. An
index that cannot be made (no CREATE privilege, read-only file, a lock held past the timeout) is
logged and tried again only after ``RETRY_AFTER_S``; the filtered query itself runs either way,
just without the index. What was made is remembered by the ``FilterIndexes`` object, so a query on
an indexed field costs one set lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from indexer.engine import mark_writer
from indexer.filters import indexed_expressions
from indexer.records import MetadataFilter

log = logging.getLogger(__name__)

# Seconds before an index that could not be made is tried again (a lock may have been held, a
# privilege granted since).
RETRY_AFTER_S = 300.0
# Seconds between two tries for another process's turn to build on PostgreSQL.
TURN_POLL_S = 0.05
INDEX_PREFIX = "ix_documents_meta_"


def is_filter_index(name: str | None) -> bool:
    """Whether a database index is one of ours, made at run time and not by a migration."""
    return bool(name) and str(name).startswith(INDEX_PREFIX)


def managed_by_migrations(name: str | None, type_: str, _parent: object) -> bool:
    """Alembic's ``include_name`` hook: autogenerate neither drops nor reports filter indexes."""
    return not (type_ == "index" and is_filter_index(name))


def index_statement(expression: ColumnElement[Any], table: str, engine: Engine) -> tuple[str, str]:
    """(index name, ``CREATE INDEX`` statement) for one value expression of ``indexed_expressions``:
    ``CONCURRENTLY IF NOT EXISTS`` on PostgreSQL, ``IF NOT EXISTS`` elsewhere. The name is a digest
    of the expression: field names can be longer than PostgreSQL's 63-character identifiers, and
    SQLite's kinds share one expression."""
    spelled = str(expression.compile(dialect=engine.dialect, compile_kwargs={"include_table": False}))
    name = INDEX_PREFIX + hashlib.sha256(spelled.encode()).hexdigest()[:16]
    concurrently = " CONCURRENTLY" if _is_postgresql(engine) else ""
    return name, f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {table} (collection_id, ({spelled}))"


def _is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _validity(connection: Connection, name: str) -> bool | None:
    """PostgreSQL: whether index ``name`` is valid (usable by the planner); None when it is absent."""
    return connection.execute(
        text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"), {"name": name}
    ).scalar_one_or_none()


class InvalidIndexLeft(Exception):
    """PostgreSQL kept an INVALID index of ours after a build: a concurrent build failed part-way."""


class TurnNotHad(Exception):
    """PostgreSQL: another process held the table's build turn past the lock timeout."""


class FilterIndexes:
    """The indexes one store's filters have needed. Thread-safe."""

    def __init__(self, engine: Engine, column: ColumnElement[Any], table: str, *, wait_s: float) -> None:
        """``wait_s``: how long a build may wait for its turn, the store's lock timeout."""
        self._engine = engine
        self._column = column
        self._table = table
        self._wait_s = wait_s
        # The advisory lock key of this table's builds (a signed 64-bit int, as PostgreSQL takes it).
        digest = hashlib.sha256(f"albatross filter indexes on {table}".encode()).digest()
        self._turn_key = int.from_bytes(digest[:8], "big", signed=True)
        self._made: set[str] = set()
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def ensure(self, metadata_filter: MetadataFilter) -> None:
        """Make the indexes ``metadata_filter`` needs that this object has not made yet."""
        for expression in indexed_expressions(metadata_filter, self._column):
            name, statement = index_statement(expression, self._table, self._engine)
            if self._wanted(name):
                self._make(name, statement)

    def _wanted(self, name: str) -> bool:
        with self._lock:
            if name in self._made:
                return False
            failed_at = self._failed_at.get(name)
            return failed_at is None or time.monotonic() - failed_at >= RETRY_AFTER_S

    def _make(self, name: str, statement: str) -> None:
        try:
            if _is_postgresql(self._engine):
                self._build_concurrently(name, statement)
            else:
                self._build_in_transaction(statement)
        except IntegrityError:
            pass  # another process created it at the same moment: it exists
        except (DBAPIError, InvalidIndexLeft, TurnNotHad) as exc:
            self._give_up_for_now(name, statement, exc)
            return
        with self._lock:
            self._made.add(name)
            self._failed_at.pop(name, None)

    def _build_in_transaction(self, statement: str) -> None:
        with self._engine.connect() as connection:
            mark_writer(connection)
            with connection.begin():
                connection.execute(text(statement))

    def _build_concurrently(self, name: str, statement: str) -> None:
        """PostgreSQL: in this table's turn, drop an INVALID leftover of ``name``, then build it
        without blocking writes (``CONCURRENTLY`` cannot run inside a transaction, hence autocommit)."""
        with (
            self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
            self._turn(connection),
        ):
            if self._drop_if_left_over(connection, name):
                log.warning(
                    "filter index %s was INVALID (an interrupted build): dropped, building it again", name
                )
            try:
                connection.execute(text(statement))
            except DBAPIError:
                # A build that failed part-way leaves its INVALID index, which writes still pay
                # for: drop it now if the lock comes in time, else the next attempt will.
                with contextlib.suppress(DBAPIError):
                    self._drop_if_left_over(connection, name)
                raise
            if _validity(connection, name) is not True:
                raise InvalidIndexLeft(f"index {name} is still INVALID after its build")

    @contextlib.contextmanager
    def _turn(self, connection: Connection) -> Iterator[None]:
        """Hold this table's build turn (a session advisory lock on ``connection``), polled for at
        most ``wait_s``; a turn not had in time raises ``TurnNotHad``."""
        deadline = time.monotonic() + self._wait_s
        take = text("SELECT pg_try_advisory_lock(:key)")
        while not connection.execute(take, {"key": self._turn_key}).scalar_one():
            if time.monotonic() >= deadline:
                raise TurnNotHad(f"another process kept building filter indexes for {self._wait_s:.0f} s")
            time.sleep(TURN_POLL_S)
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._turn_key})

    def _drop_if_left_over(self, connection: Connection, name: str) -> bool:
        """Drop index ``name`` if it is an INVALID leftover; whether it was (``connection`` autocommits)."""
        if _validity(connection, name) is not False or not self._left_over(name):
            return False
        connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        return True

    def _left_over(self, name: str) -> bool:
        """Whether INVALID index ``name`` is left over from a failed build rather than being built
        right now: a running build holds the table's SHARE UPDATE EXCLUSIVE lock until it ends, so
        once that lock is ours, an index still invalid has no build behind it."""
        with self._engine.begin() as connection:
            connection.execute(text(f"LOCK TABLE {self._table} IN SHARE UPDATE EXCLUSIVE MODE"))
            return _validity(connection, name) is False

    def _give_up_for_now(self, name: str, statement: str, exc: Exception) -> None:
        with self._lock:
            self._failed_at[name] = time.monotonic()
        if isinstance(exc, DBAPIError):
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        else:
            reason = str(exc)
        if _is_postgresql(self._engine):
            # Over an INVALID leftover, IF NOT EXISTS alone would do nothing.
            statement = f"DROP INDEX CONCURRENTLY IF EXISTS {name} (if INVALID), then {statement}"
        log.warning(
            "filtered searches run without index %s (tried again in %.0f s): %s; the table's owner can "
            "make it: %s",
            name,
            RETRY_AFTER_S,
            reason,
            statement,
        )
