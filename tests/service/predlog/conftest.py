"""Prediction-log fixtures: a real PostgreSQL server, fresh databases, stores on both engines.

The server is started by the tests themselves (Debian's `postgresql` package:
initdb and pg_ctl under /usr/lib/postgresql/*/bin), as the `postgres` user when
the tests run as root. If it cannot start, the tests that need it fail: they
never skip.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tabserve.service.predlog import PredictionStore
from tabserve.service.settings import Settings

ENGINES = ["sqlite", "postgresql"]


@dataclass
class PostgresServer:
    """A running PostgreSQL server on loopback that trusts local connections."""

    port: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3) for one database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {name} not found under /usr/lib/postgresql/*/bin: "
            "apt-get install -y postgresql (.ci/run does)"
        )
    return found[-1]


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, in a temporary data folder."""
    root = Path(tempfile.mkdtemp(prefix="tabserve-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        _as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        **run,  # type: ignore[call-overload]
    )
    port = _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            [_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
        ),
        **run,  # type: ignore[call-overload]
    )
    try:
        yield PostgresServer(port, data)
    finally:
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """`database_url(engine)`: a fresh, empty database URL on SQLite or PostgreSQL."""

    def _url(engine: str) -> str:
        if engine == "sqlite":
            return f"sqlite:///{tmp_path / f'log-{next(_databases)}.db'}"
        server: PostgresServer = request.getfixturevalue("postgres")
        return server.create_database(f"tabserve_{os.getpid()}_{next(_databases)}")

    return _url


@pytest.fixture(params=ENGINES)
def store(
    request: pytest.FixtureRequest, database_url: Callable[[str], str]
) -> Iterator[PredictionStore]:
    """A migrated store on a fresh database, once per engine (SQLite, PostgreSQL)."""
    created = PredictionStore(database_url(request.param))
    created.migrate()
    yield created
    created.dispose()


@pytest.fixture
def log_settings(models_dir: Path, tmp_path: Path) -> Callable[..., Settings]:
    """`log_settings(**overrides)`: settings with the log on (all rows) in a temp data folder.

    The writer wakes every 50 ms so tests see rows quickly; tests that need rows to
    wait in the queue raise `predlog_flush_seconds`.
    """

    def _settings(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "models_dir": models_dir,
            "inference_threads": 2,
            "max_rows": 100,
            "predlog_mode": "all",
            "data_dir": tmp_path / "data",
            "predlog_flush_seconds": 0.05,
        }
        return Settings(**{**values, **overrides})

    return _settings


@pytest.fixture
def log_store() -> Iterator[Callable[[Settings], PredictionStore]]:
    """`log_store(settings)`: the store the app with those settings writes to."""
    opened: list[PredictionStore] = []

    def _open(settings: Settings) -> PredictionStore:
        store = PredictionStore(settings.predlog_database_url)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.dispose()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus exposition text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture
def scrape() -> Callable[[Any, str], float]:
    """`scrape(client, name, **labels)`: one series' value from GET /metrics."""

    def _scrape(client: Any, name: str, **labels: str) -> float:
        return metric(client.get("/metrics").text, name, **labels)

    return _scrape


@pytest.fixture
def scrape_text() -> Callable[..., float]:
    """`scrape_text(text, name, **labels)`: one series' value in exposition text."""
    return metric
