"""Alembic migrations of the store, run from code: no alembic.ini is needed at run time.

``upgrade_to_head(connection)`` is what ``indexer.store.Store.open`` calls; ``env.py`` picks the
connection up from ``config.attributes``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Arbitrary constant: the advisory lock that serialises concurrent migrators on PostgreSQL.
_PG_MIGRATION_LOCK = 0x414C42415452


def upgrade_to_head(connection: Connection) -> None:
    """Bring the schema to the newest revision in one transaction on ``connection``.

    On SQLite the caller's connection begins with BEGIN IMMEDIATE, which serialises migrators;
    PostgreSQL takes an advisory lock, else two processes opening a fresh database at once would
    race on CREATE TABLE.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
