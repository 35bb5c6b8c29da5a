"""The SQLAlchemy engine under a ``Store``: per-database connection settings, writer
transactions, and what goes wrong reaching the database as our own errors.

SQLite gets WAL, ``synchronous=FULL`` (a commit is on disk before it is acknowledged,
docs/ARCHITECTURE.md, Invariants 1), foreign keys, a busy timeout, and our own ``BEGIN``:
writer transactions (``mark_writer``) start with ``BEGIN IMMEDIATE``, so a second writer waits on
the busy timeout instead of failing to upgrade a read lock half-way through. PostgreSQL gets a
``lock_timeout`` of the same length.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

from indexer.config import StoreConfig
from indexer.store_errors import connection_errors, database_url, driver_errors

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
    """The engine for ``config.url``, configured for its database; a URL that names no usable
    database or driver is ``InvalidArgument`` (``indexer.store_errors``)."""
    url = database_url(config.url)
    with driver_errors(url):
        if url.get_backend_name() == "postgresql":
            # The same bound as SQLite's busy timeout: a writer waits this long for another writer's
            # row lock, then gets StoreBusy instead of waiting forever behind a stuck transaction.
            options = f"-c lock_timeout={int(config.busy_timeout_s * 1000)}"
            return create_engine(url, pool_pre_ping=True, connect_args={"options": options})
        if url.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
        engine = create_engine(
            url, connect_args={"timeout": config.busy_timeout_s, "check_same_thread": False}
        )
    _configure_sqlite(engine, config.busy_timeout_s)
    return engine


def mark_writer(connection: Connection) -> None:
    """Make ``connection``'s transactions writers: on SQLite they take the writer lock up front."""
    connection.execution_options(**{_WRITE_OPTION: True})


def translated_errors(engine: Engine, busy_timeout_s: float) -> AbstractContextManager[None]:
    """Around connecting and every transaction: a lock wait that ran out becomes ``StoreBusy``, a
    database that cannot be reached or written ``StoreUnavailable``, each naming the database."""
    return connection_errors(engine.url, busy_timeout_s)
