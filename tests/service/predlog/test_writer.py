"""The writer through the real lifespan: rows land in a real SQLite file, drops are counted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.core.dataplane import Served
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.core.runtime import Prediction
from tabserve.service.predlog import LoggedRow, PredictionStore
from tabserve.service.predlog.metrics import PredictionLogMetrics
from tabserve.service.predlog.writer import PredictionLogWriter, WriterPolicy
from tabserve.service.settings import Settings

StoreOf = Callable[[Settings], PredictionStore]
IRIS = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}
Scrape = Callable[..., float]


def predict(client: TestClient, request_id: str, rows: int = 1, model: str = "iris") -> Any:
    body = [IRIS] * rows if rows > 1 else IRIS
    answer = client.post(
        f"/models/{model}/predict", json=body, headers={"x-request-id": request_id}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until `condition` holds; the bound only keeps a broken test from hanging."""
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_every_row_is_logged_with_names_outputs_and_latency(
    log_settings: Callable[..., Settings], log_store: StoreOf, scrape: Scrape
) -> None:
    settings = log_settings()
    before = time.time()
    with TestClient(create_app(settings)) as client:
        answer = predict(client, "req-1", rows=3)
        predict(client, "req-2")
        wait_for(
            lambda: scrape(client, "tabserve_prediction_log_rows_written_total") == 4,
            "the writer to write 4 rows",
        )
    # The lifespan's shutdown wrote whatever was still queued.
    store = log_store(settings)
    assert settings.predlog_database_url == f"sqlite:///{settings.predlog.data_dir}/predictions.db"
    assert (settings.predlog.data_dir / "predictions.db").is_file()
    page = store.page("iris", limit=10)
    assert [(p.row.request_id, p.row.row) for p in page] == [
        ("req-2", 0),
        ("req-1", 2),
        ("req-1", 1),
        ("req-1", 0),
    ]
    first = page[-1].row
    assert first.inputs == IRIS
    assert first.version == answer["version"] == 2
    assert first.prediction == answer["predictions"][0]["prediction"]
    assert first.probabilities == pytest.approx(answer["predictions"][0]["probabilities"])
    assert before <= first.time <= time.time()
    assert first.latency_seconds > 0


def test_redacted_features_are_stored_as_null(
    log_settings: Callable[..., Settings], log_store: StoreOf
) -> None:
    settings = log_settings(log_redact=["petal_width_cm", "sepal_length_cm"])
    with TestClient(create_app(settings)) as client:
        predict(client, "secret")
    (logged,) = log_store(settings).page("iris", limit=10)
    assert logged.row.inputs == {**IRIS, "petal_width_cm": None, "sepal_length_cm": None}


def test_a_full_queue_drops_and_counts_rows_without_delaying_answers(
    log_settings: Callable[..., Settings], log_store: StoreOf, scrape: Scrape
) -> None:
    # The writer sleeps for a minute, so nothing leaves the 3-row queue during the test.
    settings = log_settings(predlog_queue_rows=3, predlog_flush_seconds=60)
    with TestClient(create_app(settings)) as client:
        predict(client, "a", rows=2)  # queued: 2
        predict(client, "b", rows=2)  # 4 > 3: dropped
        predict(client, "c")  # queued: 3
        predict(client, "d")  # dropped
        assert (
            scrape(client, "tabserve_prediction_log_rows_dropped_total", reason="queue_full") == 3
        )
        assert scrape(client, "tabserve_prediction_log_queue_rows") == 3
        assert scrape(client, "tabserve_prediction_log_rows_written_total") == 0
    store = log_store(settings)
    assert sorted({p.row.request_id for p in store.page("iris", limit=10)}) == ["a", "c"]


def test_sampled_mode_logs_about_the_fraction_of_requests(
    log_settings: Callable[..., Settings], log_store: StoreOf
) -> None:
    settings = log_settings(predlog_mode="sampled", predlog_sample_fraction=0.25)
    with TestClient(create_app(settings)) as client:
        for i in range(200):
            predict(client, f"s{i}", rows=2)
    store = log_store(settings)
    logged = store.page("iris", limit=1000)
    requests = {p.row.request_id for p in logged}
    # Binomial(200, 0.25): mean 50, sd 6.1; 20..80 is beyond 4.9 sd either side.
    assert 20 <= len(requests) <= 80
    assert len(logged) == 2 * len(requests)  # a request is logged whole or not at all


def test_mode_off_logs_nothing_and_the_log_routes_answer_409(
    log_settings: Callable[..., Settings],
) -> None:
    settings = log_settings(predlog_mode="off")
    with TestClient(create_app(settings)) as client:
        predict(client, "x")
        assert client.get("/models/iris/predictions").status_code == 409
        assert client.post("/models/iris/feedback", json=[]).status_code == 409
    assert not settings.predlog.data_dir.exists()


def test_retention_deletes_rows_older_than_the_age_limit(
    log_settings: Callable[..., Settings], log_store: StoreOf, scrape: Scrape
) -> None:
    settings = log_settings(predlog_retention_seconds=3600, predlog_retention_interval_seconds=0.05)
    old = LoggedRow("iris", 2, "old", 0, time.time() - 7200, 0.001, IRIS, "setosa", None)
    store = log_store(settings)
    store.migrate()
    store.write([old])
    with TestClient(create_app(settings)) as client:
        predict(client, "new")
        wait_for(
            lambda: (
                # one read: between a count and a page the writer may delete the old row
                [r.row.request_id for r in store.page("iris", limit=2)] == ["new"]
            ),
            "retention by age",
        )
        assert scrape(client, "tabserve_prediction_log_rows_expired_total", reason="age") == 1


def test_retention_keeps_the_newest_rows_within_the_size_limit(
    log_settings: Callable[..., Settings], log_store: StoreOf, scrape: Scrape
) -> None:
    settings = log_settings(predlog_max_rows=3, predlog_retention_interval_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        store = log_store(settings)
        for i in range(5):
            predict(client, f"r{i}")
        wait_for(
            lambda: [p.row.request_id for p in store.page("iris", limit=10)] == ["r4", "r3", "r2"],
            "retention by size",
        )
        assert scrape(client, "tabserve_prediction_log_rows_expired_total", reason="size") == 2


def served(request_id: str, rows: int, model: Any) -> Served:
    features = np.tile(np.asarray([list(IRIS.values())]), (rows, 1))
    labels = np.asarray(["setosa"] * rows)
    return Served(request_id, model, features, Prediction(labels), time.time(), 0.001)


def test_sampling_keeps_exactly_the_requests_drawn_below_the_fraction(
    client: TestClient, tmp_path: Any
) -> None:
    model = client.app.state.tabserve.registry.ready("iris")  # type: ignore[attr-defined]
    store = PredictionStore(f"sqlite:///{tmp_path / 'log.db'}")
    store.migrate()
    draws = iter([0.1, 0.5, 0.29, 0.3, 0.99])
    writer = PredictionLogWriter(
        store,
        WriterPolicy(fraction=0.3),
        PredictionLogMetrics(ServiceMetrics().registry),
        sample=lambda: next(draws),
    )
    writer.start()
    for i in range(5):
        writer(served(f"q{i}", 1, model))
    writer.close()
    assert sorted(p.row.request_id for p in store.page("iris", limit=10)) == ["q0", "q2"]
    store.dispose()


def test_a_failing_database_drops_and_counts_the_batch(client: TestClient, tmp_path: Any) -> None:
    model = client.app.state.tabserve.registry.ready("iris")  # type: ignore[attr-defined]
    store = PredictionStore(f"sqlite:///{tmp_path / 'never-migrated.db'}")  # no tables
    metrics = ServiceMetrics()
    writer = PredictionLogWriter(store, WriterPolicy(), PredictionLogMetrics(metrics.registry))
    writer.start()
    writer(served("lost", 2, model))
    assert writer.flush()
    writer.close()
    text = metrics.render()[0].decode()
    assert 'tabserve_prediction_log_rows_dropped_total{reason="write_failed"} 2.0' in text
    assert "tabserve_prediction_log_write_failures_total 1.0" in text
    store.dispose()
