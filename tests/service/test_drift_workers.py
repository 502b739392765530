"""Drift counts with `serve --workers 2`: exact totals over both workers' metric files."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

REQUESTS = 200
FEATURES = 4
ROW = [[6.1, 2.8, 4.7, 1.2]]


def two_workers(
    launch: Callable[..., Any], models_dir: Path, folder: Path, flush_seconds: float
) -> Any:
    """`serve --workers 2` with its metric files in `folder`."""
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "TABSERVE_DRIFT_FLUSH_SECONDS": str(flush_seconds),
    }
    return launch(models_dir, "--workers", "2", env=env)


def post_batch(url: str) -> None:
    """REQUESTS one-row requests on fresh connections from 8 threads."""
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, limits=limits, timeout=30) as client:

        def one(_: int) -> int:
            answer = client.post("/v1/models/iris:predict", json={"instances": ROW})
            return answer.status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(one, range(REQUESTS))) == {200}


def answered_by(folder: Path) -> int:
    """How many workers have answered a prediction, read from their own counter files.

    The HTTP counter is written to the worker's file at once (only drift counts are
    buffered), so this needs no scrape, which would flush the scraped worker's drift.
    """
    return len(
        [n for n in per_file(folder, "tabserve_http_requests_total", V1_ROUTE).values() if n > 0]
    )


def post_all(url: str, folder: Path) -> int:
    """Batches of REQUESTS until both workers have answered some; returns the rows sent.

    The kernel hands fresh connections to whichever worker accepts first, and nothing
    makes it share them: one batch can all go to one worker.
    """
    sent = 0
    while sent == 0 or answered_by(folder) < 2:
        assert sent < 20 * REQUESTS, "one worker answered every request"
        post_batch(url)
        sent += REQUESTS
    return sent


def scraped(url: str, metric: str) -> float:
    """Sum of `metric`'s samples for iris version 2 in one scrape."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric
        and sample.labels.get("model") == "iris"
        and sample.labels.get("version") == "2"
    )


IRIS_2 = {"model": "iris", "version": "2"}
V1_ROUTE = {"route": "/v1/models/{model}:predict", "status": "200"}


def per_file(folder: Path, metric: str, labels: dict[str, str] | None = None) -> dict[str, float]:
    """`metric`'s samples matching `labels` (iris version 2) in each process's counter file."""
    wanted = (IRIS_2 if labels is None else labels).items()
    found = {}
    for path in sorted(folder.glob("counter_*.db")):
        found[path.name] = sum(
            sample.value
            for family in MultiProcessCollector.merge([str(path)])
            for sample in family.samples
            if sample.name == metric and wanted <= sample.labels.items()
        )
    return found


def test_bins_add_up_exactly_across_two_workers(
    launch: Callable[..., Any], models_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    url: str = two_workers(launch, models_dir, folder, flush_seconds=0.1).url
    sent = post_all(url, folder)
    # A scrape flushes the worker that answers it; the other flushes on its 0.1 s timer.
    expected = sent * FEATURES
    deadline = time.monotonic() + 30
    while scraped(url, "tabserve_drift_rows_total") < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scraped(url, "tabserve_drift_rows_total") == expected
    assert scraped(url, "tabserve_drift_prediction_rows_total") == sent
    # references are one set of shares, not one per worker
    assert scraped(url, "tabserve_drift_reference_ratio") == pytest.approx(FEATURES)
    files = per_file(folder, "tabserve_drift_rows_total")
    assert len([n for n in files.values() if n > 0]) == 2, files  # both workers counted
    assert sum(files.values()) == expected
    # every worker's /drift covers both workers' rows
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, limits=limits, timeout=10) as client:
        for _ in range(6):
            report = client.get("/models/iris/drift").json()
            assert report["rows"] == sent
            assert all(f["rows"] == sent for f in report["features"])
            assert report["prediction"]["rows"] == sent


def test_workers_flush_what_they_buffered_when_they_stop(
    launch: Callable[..., Any], models_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    server = two_workers(launch, models_dir, folder, flush_seconds=60)
    sent = post_all(server.url, folder)
    assert server.stop() == 0
    # no scrape, no timer tick: each worker flushed its buffer as it shut down
    files = per_file(folder, "tabserve_drift_rows_total")
    assert len([n for n in files.values() if n > 0]) == 2, files
    assert sum(files.values()) == sent * FEATURES
