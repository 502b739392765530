"""Durability `journal`: a worker SIGKILLed under load loses no answered row, and none doubles."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.predlog.journal import Journal
from tabserve.service.predlog.metrics import PredictionLogMetrics
from tabserve.service.predlog.records import LoggedRow
from tabserve.service.predlog.store import PredictionStore
from tabserve.service.predlog.writer import PredictionLogWriter, WriterPolicy

IRIS = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}
HANG_GUARD_SECONDS = 120  # a hang guard only; nothing is timed


def workers_of(master: int) -> set[int]:
    """The worker processes gunicorn's master has forked."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


class Load:
    """Threads posting one record each, until stopped; remembers every answered request id."""

    def __init__(self, url: str, threads: int = 8) -> None:
        self.url = url
        self.answered: set[str] = set()
        self.failed = 0  # requests the killed worker never answered
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(HANG_GUARD_SECONDS)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)  # both workers get requests
        with httpx.Client(base_url=self.url, limits=limits, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/models/iris/predict", json=IRIS)
                except httpx.HTTPError:
                    with self._lock:
                        self.failed += 1
                    continue
                if answer.status_code == 200:
                    with self._lock:
                        self.answered.add(answer.json()["request_id"])

    def wait_for(self, count: int) -> None:
        """Until `count` requests in all are answered."""
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while len(self.answered) < count:
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.05)


def logged(database: Path) -> list[str]:
    """Request ids of every logged row, one per row (duplicates would repeat)."""
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        ids = [r[0] for r in connection.execute(sa.text("SELECT request_id FROM predictions"))]
    engine.dispose()
    return ids


@pytest.mark.slow
def test_a_worker_killed_under_load_loses_no_answered_row_in_journal_mode(
    models_dir: Path, tmp_path: Path, launch: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    env = {
        "TABSERVE_PREDLOG_MODE": "all",
        "TABSERVE_PREDLOG_DURABILITY": "journal",
        "TABSERVE_DATA_DIR": str(data),
        # the writer would wait a minute: every row answered before the kill is in memory only
        "TABSERVE_PREDLOG_FLUSH_SECONDS": "60",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    server = launch(models_dir, "--workers", "2", env=env)
    master = server.process.pid
    with Load(server.url) as load:
        load.wait_for(200)
        killed = min(workers_of(master))
        os.kill(killed, signal.SIGKILL)
        # gunicorn forks a new worker, which replays the journal of the one that died
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while len(workers_of(master) - {killed}) < 2:
            assert time.monotonic() < deadline, "no worker replaced the killed one"
            time.sleep(0.05)
        load.wait_for(len(load.answered) + 200)
    assert server.stop() == 0  # the other workers store what they hold as they stop
    rows = logged(data / "predictions.db")
    assert len(rows) == len(set(rows))  # no row twice
    assert load.answered <= set(rows)  # every answered row is in the log
    assert not list((data / "predlog-journal").glob("*.jsonl"))  # nothing left to replay


def test_replay_stores_a_dead_process_rows_once_and_skips_a_cut_last_line(
    tmp_path: Path,
) -> None:
    database = tmp_path / "predictions.db"
    store = PredictionStore(f"sqlite:///{database}")
    store.migrate()
    rows = [
        LoggedRow("iris", 1, f"r{i}", 0, 1.0, 0.001, {"sepal_length_cm": 5.1}, "setosa")
        for i in range(3)
    ]
    store.write(rows[:2])  # stored just before the crash, its segment not yet deleted
    folder = tmp_path / "predlog-journal"
    folder.mkdir()
    (folder / "999999999.lock").touch()  # a process that is gone: nobody holds its lock
    segment = folder / "999999999-1.jsonl"
    lines = b"".join(orjson.dumps(asdict(row)) + b"\n" for row in rows)
    segment.write_bytes(lines + b'{"model": "iris", "vers')  # the machine stopped mid-write
    metrics = PredictionLogMetrics(ServiceMetrics().registry)
    writer = PredictionLogWriter(store, WriterPolicy(), metrics, journal=Journal(folder))
    writer.start()
    writer.close()
    store.dispose()
    assert sorted(logged(database)) == ["r0", "r1", "r2"]
    assert sorted(p.name for p in folder.iterdir()) == []
