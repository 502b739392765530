"""Alembic's entry point: runs on the connection `tabserve.service.predlog.migrate` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from tabserve.service.predlog.tables import metadata

VERSION_TABLE = "predlog_alembic_version"


def run() -> None:
    """Migrate online, on the caller's connection and transaction (never offline SQL)."""
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run migrations through service.predlog.migrate, with a connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
