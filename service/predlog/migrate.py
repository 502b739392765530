"""Bring a prediction-log database to the newest schema (`alembic upgrade head`), once.

Several processes may start against one database at the same moment (pods on
PostgreSQL, or separate servers on one SQLite file), so the upgrade runs under a
lock: a transaction-scoped advisory lock on PostgreSQL, a file lock beside a
SQLite file. The loser of the race waits, then finds the schema current.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock takes a signed bigint; "tabserv" in ASCII names the log schema.
ADVISORY_LOCK_KEY = 0x74616273657276


def migrate(engine: Engine) -> None:
    """Upgrade `engine`'s database to the newest revision; a no-op when it is current."""
    with _file_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        command.upgrade(_config(connection), "head")


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on `<database>.migrate.lock` for SQLite files; else nothing."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
