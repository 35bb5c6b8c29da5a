"""Alembic environment: online only, on the connection ``indexer.store`` hands over.

There is no alembic.ini: ``Store.open`` builds the ``Config`` in code and passes its open connection
in ``config.attributes["connection"]`` (already inside a transaction that serialises migrators).
"""

from __future__ import annotations

from alembic import context

from indexer.filter_indexes import managed_by_migrations
from indexer.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through indexer.store.Store.open, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    include_name=managed_by_migrations,
)
with context.begin_transaction():
    context.run_migrations()
