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

``CREATE INDEX IF NOT EXISTS`` runs in its own short writer transaction, under the store's lock
timeout: two processes racing to create the same index both succeed (PostgreSQL reports the
loser as a duplicate ``pg_class`` row, taken here as done). An index that cannot be made (no
CREATE privilege, read-only file, a lock held past the timeout) is logged and tried again only
after ``RETRY_AFTER_S``; the filtered query itself runs either way, just without the index. What was
made is remembered by the ``FilterIndexes`` object, so a query on an indexed field costs one set
lookup.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from indexer.engine import mark_writer
from indexer.filters import indexed_expressions
from indexer.records import MetadataFilter

log = logging.getLogger(__name__)

# Seconds before an index that could not be made is tried again (a lock may have been held, a
# privilege granted since).
RETRY_AFTER_S = 300.0
INDEX_PREFIX = "ix_documents_meta_"


def is_filter_index(name: str | None) -> bool:
    """Whether a database index is one of ours, made at run time and not by a migration."""
    return bool(name) and str(name).startswith(INDEX_PREFIX)


def managed_by_migrations(name: str | None, type_: str, _parent: object) -> bool:
    """Alembic's ``include_name`` hook: autogenerate neither drops nor reports filter indexes."""
    return not (type_ == "index" and is_filter_index(name))


def index_statement(expression: ColumnElement[Any], table: str, engine: Engine) -> tuple[str, str]:
    """(index name, ``CREATE INDEX IF NOT EXISTS`` statement) for one value expression of
    ``indexed_expressions``. The name is a digest of the expression: field names can be longer
    than PostgreSQL's 63-character identifiers, and SQLite's kinds share one expression."""
    spelled = str(expression.compile(dialect=engine.dialect, compile_kwargs={"include_table": False}))
    name = INDEX_PREFIX + hashlib.sha256(spelled.encode()).hexdigest()[:16]
    return name, f"CREATE INDEX IF NOT EXISTS {name} ON {table} (collection_id, ({spelled}))"


class FilterIndexes:
    """The indexes one store's filters have needed. Thread-safe."""

    def __init__(self, engine: Engine, column: ColumnElement[Any], table: str) -> None:
        self._engine = engine
        self._column = column
        self._table = table
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
            with self._engine.connect() as connection:
                mark_writer(connection)
                with connection.begin():
                    connection.execute(text(statement))
        except IntegrityError:
            pass  # another process created it at the same moment: it exists
        except DBAPIError as exc:
            with self._lock:
                self._failed_at[name] = time.monotonic()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            log.warning(
                "filtered searches run without index %s (tried again in %.0f s): %s; the table's owner can "
                "make it: %s",
                name,
                RETRY_AFTER_S,
                reason,
                statement,
            )
            return
        with self._lock:
            self._made.add(name)
            self._failed_at.pop(name, None)
