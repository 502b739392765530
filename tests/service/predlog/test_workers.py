"""Real `tabserve serve --workers 2` processes sharing one SQLite log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tabserve.service.predlog import PredictionStore

IRIS = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}


def written_per_worker(folder: Path) -> list[float]:
    """Rows each worker process wrote, from its own multiprocess metrics file."""
    counts = []
    for path in folder.glob("counter_*.db"):
        total = 0.0
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[1] == "tabserve_prediction_log_rows_written_total":
                total += value
        if total:
            counts.append(total)
    return counts


@pytest.mark.slow
def test_rows_from_two_workers_all_reach_the_log_and_feedback_counts_add_up(
    models_dir: Path,
    tmp_path: Path,
    launch: Callable[..., Any],
    scrape_text: Callable[[str, str], float],
) -> None:
    data = tmp_path / "data"
    server = launch(
        models_dir,
        "--workers",
        "2",
        env={
            "TABSERVE_PREDLOG_MODE": "all",
            "TABSERVE_DATA_DIR": str(data),
            "TABSERVE_PREDLOG_FLUSH_SECONDS": "0.05",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        },
    )
    # Fresh connections from 8 threads at once, until both workers have taken requests:
    # a generated request id starts with its worker's own 16-digit prefix.
    limits = httpx.Limits(max_keepalive_connections=0)
    served: list[str] = []
    with httpx.Client(base_url=server.url, limits=limits, timeout=30) as client:

        def send(_: int) -> str:
            answer = client.post("/models/iris/predict", json=[IRIS, IRIS])
            assert answer.status_code == 200
            return str(answer.json()["request_id"])

        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(served) < 40 or len({rid[:16] for rid in served}) < 2:
                assert len(served) < 800, "one worker took every request"
                served += pool.map(send, range(40))
    rows = 2 * len(served)
    # Ground truth for every row, retried until the worker that predicted it has written it.
    pending = [{"request_id": rid, "row": r, "truth": "setosa"} for rid in served for r in (0, 1)]
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        with httpx.Client(base_url=server.url) as client:
            results = client.post("/models/iris/feedback", json=pending).json()["results"]
        pending = [
            {"request_id": r["request_id"], "row": r["row"], "truth": "setosa"}
            for r in results
            if r["outcome"] == "unknown_request"
        ]
        assert all(r["outcome"] in ("accepted", "unknown_request") for r in results)
        time.sleep(0.05)
    assert pending == []
    metrics = httpx.get(server.url + "/metrics").text
    # Each worker counted the truths it accepted; the scrape sums both processes.
    assert scrape_text(metrics, "tabserve_feedback_rows_total", model="iris", version="2") == rows
    per_worker = written_per_worker(tmp_path / "metrics")
    assert len(per_worker) == 2  # both workers wrote rows (a file holds one process's counts)
    assert sum(per_worker) == rows
    assert server.stop() == 0
    store = PredictionStore(f"sqlite:///{data / 'predictions.db'}")
    keys = {(p.row.request_id, p.row.row) for p in store.page("iris", limit=1000)}
    assert keys == {(rid, r) for rid in served for r in (0, 1)}
    assert len(store.labelled("iris")) == rows
    store.dispose()
