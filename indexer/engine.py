"""The SQLAlchemy engine under a ``Store``: per-database connection settings, writer
transactions, and lock waits that ran out as ``StoreBusy``.

SQLite gets WAL, ``synchronous=FULL`` (a commit is on disk before it is acknowledged,
docs/ARCHITECTURE.md, Invariants 1), foreign keys, a busy timeout, and our own ``BEGIN``:
writer transactions (``mark_writer``) start with ``BEGIN IMMEDIATE``, so a second writer waits on
the busy timeout instead of failing to upgrade a read lock half-way through. PostgreSQL gets a
``lock_timeout`` of the same length.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from indexer.config import StoreConfig
from indexer.errors import StoreBusy

_WRITE_OPTION = "albatross_write"


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    """Pragmas on every new connection, and our own BEGIN (pysqlite's implicit one is unusable)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: SQLAlchemy's "begin" event below emits BEGIN itself, so
        # DDL is transactional and writers can ask for BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_store_engine(config: StoreConfig) -> Engine:
    """The engine for ``config.url``, configured for its database."""
    url = make_url(config.url)
    if url.get_backend_name() == "postgresql":
        # The same bound as SQLite's busy timeout: a writer waits this long for another writer's
        # row lock, then gets StoreBusy instead of waiting forever behind a stuck transaction.
        options = f"-c lock_timeout={int(config.busy_timeout_s * 1000)}"
        return create_engine(url, pool_pre_ping=True, connect_args={"options": options})
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": config.busy_timeout_s, "check_same_thread": False})
    _configure_sqlite(engine, config.busy_timeout_s)
    return engine


def _is_locked(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "database is locked" in message or "database table is locked" in message


def _is_lock_timeout(exc: OperationalError) -> bool:
    """PostgreSQL's lock_not_available (SQLSTATE 55P03), raised when lock_timeout runs out."""
    return getattr(exc.orig, "sqlstate", None) == "55P03"


def mark_writer(connection: Connection) -> None:
    """Make ``connection``'s transactions writers: on SQLite they take the writer lock up front."""
    connection.execution_options(**{_WRITE_OPTION: True})


@contextmanager
def busy_as_store_busy(engine: Engine, busy_timeout_s: float) -> Iterator[None]:
    """Turn a lock wait that ran out (SQLite's busy timeout, PostgreSQL's lock_timeout) into
    ``StoreBusy``, naming the database and the timeout."""
    try:
        yield
    except OperationalError as exc:
        if engine.dialect.name == "sqlite" and _is_locked(exc):
            raise StoreBusy(
                f"the SQLite database {engine.url.database} stayed locked for "
                f"{busy_timeout_s:g}s: another process is writing to it. "
                "Retry later, or raise the busy timeout."
            ) from exc
        if _is_lock_timeout(exc):
            raise StoreBusy(
                f"PostgreSQL database {engine.url.database}: a row lock stayed held for "
                f"{busy_timeout_s:g}s: another writer is working on this collection. "
                "Retry later, or raise the busy timeout."
            ) from exc
        raise
