"""Ground truth joined with the log, per-item outcomes, and live quality (API and metrics)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from tabserve.service.app import create_app
from tabserve.service.predlog import Outcome, Truth
from tabserve.service.predlog.quality import measure
from tabserve.service.predlog.records import LabelledRow
from tabserve.service.predlog.truths import ERROR_CAP, TruthRange, absolute_error
from tabserve.service.settings import Settings
from tabserve.training.datasets import load_bundled

DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def records(dataset: str) -> tuple[list[dict[str, float]], list[Any]]:
    """A bundled dataset's rows keyed by feature name, and their targets."""
    data = load_bundled(dataset)
    names = [c.name for c in data.columns]
    rows = [dict(zip(names, map(float, r), strict=True)) for r in data.features]
    return rows, data.target.tolist()


IRIS = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}


@pytest.fixture
def log_client(log_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """The log on, its writer asleep for a minute: rows stay queued until feedback needs them."""
    with TestClient(create_app(log_settings(predlog_flush_seconds=60))) as client:
        yield client


def predict(client: TestClient, model: str, rows: list[dict[str, Any]], request_id: str) -> Any:
    answer = client.post(
        f"/models/{model}/predict", json=rows, headers={"x-request-id": request_id}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def feedback(client: TestClient, model: str, body: Any) -> Any:
    answer = client.post(f"/models/{model}/feedback", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_feedback_right_after_the_prediction_finds_the_queued_row(log_client: TestClient) -> None:
    predict(log_client, "iris", [IRIS, IRIS], "fresh")
    body = feedback(log_client, "iris", {"request_id": "fresh", "truth": "setosa"})
    assert body == {
        "model": "iris",
        "accepted": 1,
        "results": [
            {
                "request_id": "fresh",
                "row": 0,
                "outcome": "accepted",
                "version": 2,
                "error": None,
            }
        ],
    }


def test_each_item_gets_its_outcome_in_order(log_client: TestClient, scrape: Any) -> None:
    predict(log_client, "iris", [IRIS, IRIS], "r1")
    feedback(log_client, "iris", [{"request_id": "r1", "row": 1, "truth": "virginica"}])
    body = feedback(
        log_client,
        "iris",
        [
            {"request_id": "r1", "row": 0, "truth": "setosa"},
            {"request_id": "r1", "row": 0, "truth": "versicolor"},  # repeats the item before
            {"request_id": "r1", "row": 1, "truth": "setosa"},  # already has truth
            {"request_id": "r1", "row": 2, "truth": "setosa"},  # r1 had two rows
            {"request_id": "nobody", "truth": "setosa"},
            {"request_id": "r1", "row": 0, "truth": "tulip"},
            {"request_id": "r1", "row": 0, "truth": 0},
        ],
    )
    outcomes = [(r["outcome"], r["version"]) for r in body["results"]]
    assert outcomes == [
        ("accepted", 2),
        ("duplicate", 2),
        ("duplicate", 2),
        ("unknown_request", None),
        ("unknown_request", None),
        ("duplicate", 2),  # r1/0 has its truth now: duplicates come before validity
        ("duplicate", 2),
    ]
    assert body["accepted"] == 1
    items = "tabserve_feedback_items_total"
    assert scrape(log_client, items, model="iris", outcome="accepted") == 2
    assert scrape(log_client, items, model="iris", outcome="duplicate") == 4
    assert scrape(log_client, items, model="iris", outcome="unknown_request") == 2


def test_truth_must_fit_the_model(log_client: TestClient) -> None:
    predict(log_client, "iris", [IRIS], "c")
    predict(log_client, "diabetes", [dict.fromkeys(DIABETES_FEATURES, 0.01)], "r")
    body = feedback(log_client, "iris", [{"request_id": "c", "truth": "tulip"}])
    (result,) = body["results"]
    assert result["outcome"] == "invalid"
    assert result["error"] == (
        "expected one of the model's classes ('setosa', 'versicolor', 'virginica'), got 'tulip'"
    )
    body = feedback(log_client, "diabetes", [{"request_id": "r", "truth": "high"}])
    assert body["results"][0]["error"] == "expected a number (the model is a regressor), got 'high'"
    assert feedback(log_client, "diabetes", {"request_id": "r", "truth": 151})["accepted"] == 1


FAR_TRUTHS = [10**400, -(10**400), 1e308, -1e308, 1e9, math.nan, math.inf]


def test_truths_far_outside_the_training_target_are_invalid_and_quality_stays_finite(
    log_client: TestClient, scrape: Callable[..., float]
) -> None:
    rows = [dict.fromkeys(DIABETES_FEATURES, 0.01)] * (len(FAR_TRUTHS) + 1)
    answer = predict(log_client, "diabetes", rows, "far")
    items = [{"request_id": "far", "row": k, "truth": t} for k, t in enumerate(FAR_TRUTHS)]
    items.append({"request_id": "far", "row": len(FAR_TRUTHS), "truth": 151})
    body = json.dumps(items).encode()  # NaN and Infinity as Python's json writes them
    sent = log_client.post(
        "/models/diabetes/feedback", content=body, headers={"content-type": "application/json"}
    )
    assert sent.status_code == 200, sent.text
    results = sent.json()["results"]
    assert [r["outcome"] for r in results] == ["invalid"] * len(FAR_TRUTHS) + ["accepted"]
    state = log_client.app.state.tabserve  # type: ignore[attr-defined]
    manifest = state.registry.ready("diabetes").manifest
    bounds = TruthRange.of(manifest.target)
    low, high = bounds.low, bounds.high
    assert -1e9 < low < -1e5 < 1e5 < high < 1e9  # diabetes targets lie in 25..346
    for result in results[:-1]:
        assert result["error"].startswith(f"expected a finite number within [{low:g}, {high:g}]")
    assert "an integer of about 401 digits" in results[0]["error"]
    error = abs(answer["predictions"][-1]["prediction"] - 151)
    (v1,) = log_client.get("/models/diabetes/quality").json()["versions"]
    assert (v1["rows"], v1["mae"]) == (1, pytest.approx(error))
    labels = {"model": "diabetes", "version": "1"}
    assert scrape(log_client, "tabserve_feedback_absolute_error_total", **labels) == (
        pytest.approx(error)
    )


def test_one_rows_error_counts_at_most_the_cap_so_the_sums_stay_finite() -> None:
    assert absolute_error(1e308, -1e308) == ERROR_CAP
    assert absolute_error(math.inf, 1.0) == ERROR_CAP
    assert absolute_error(math.nan, 1.0) == ERROR_CAP
    assert absolute_error(3.0, 1.0) == 2.0
    # Rows stored before truths were bounded: the window's MAE is still a number.
    stored = [
        LabelledRow("m", 1, "r", k, 0.0, {}, prediction, truth, 0.0)
        for k, (prediction, truth) in enumerate([(1e308, -1e308), (2.0, 1e308), (3.0, 1.0)])
    ]
    (quality,) = measure(stored, "regression")
    assert quality.mae is not None
    assert math.isfinite(quality.mae)
    assert quality.mae == pytest.approx((2 * ERROR_CAP + 2.0) / 3)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"request_id": "x", "truth": True}, 422, "invalid_request"),
        ({"request_id": "x"}, 422, "invalid_request"),
        ({"request_id": "has space", "truth": "setosa"}, 422, "invalid_request"),
        ({"request_id": "x", "row": -1, "truth": "setosa"}, 422, "invalid_request"),
        ({"request_id": "x", "row": 2**31, "truth": "setosa"}, 422, "invalid_request"),
        # lax parsing would read these as row 1
        ({"request_id": "x", "row": True, "truth": "setosa"}, 422, "invalid_request"),
        ({"request_id": "x", "row": "1", "truth": "setosa"}, 422, "invalid_request"),
        ({"request_id": "x", "truth": "setosa", "extra": 1}, 422, "invalid_request"),
        ([{"request_id": "x", "truth": "setosa"}] * 6, 413, "too_large"),
    ],
)
def test_a_malformed_body_is_refused_whole(
    log_settings: Callable[..., Settings], body: Any, status: int, code: str
) -> None:
    with TestClient(create_app(log_settings(feedback_max_items=5))) as client:
        answer = client.post("/models/iris/feedback", json=body)
        assert answer.status_code == status
        assert answer.json()["code"] == code
        assert answer.json()["details"]


def test_unknown_model_is_404(log_client: TestClient) -> None:
    for answer in (
        log_client.post("/models/nope/feedback", json={"request_id": "x", "truth": 1}),
        log_client.get("/models/nope/quality"),
        log_client.get("/models/nope/predictions"),
    ):
        assert answer.status_code == 404
        assert answer.json()["code"] == "model_not_found"


def confusion_quality(text: str, metric: Callable[..., float], version: str) -> tuple[float, float]:
    """Accuracy and macro F1 from the Prometheus counters, as the documented PromQL does."""
    from prometheus_client.parser import text_string_to_metric_families

    cells: dict[tuple[str, str], float] = {}
    correct: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model") != "iris" or s.labels.get("version") != version:
                continue
            if s.name == "tabserve_feedback_confusion_total":
                cells[(s.labels["actual"], s.labels["predicted"])] = s.value
            if s.name == "tabserve_feedback_correct_total":
                correct[s.labels["class"]] = s.value
    total = sum(cells.values())
    assert total == metric(text, "tabserve_feedback_rows_total", model="iris", version=version)
    actual = {c: sum(v for (a, _), v in cells.items() if a == c) for c in correct}
    predicted = {c: sum(v for (_, p), v in cells.items() if p == c) for c in correct}
    f1 = [2 * correct[c] / (actual[c] + predicted[c]) for c in correct if actual[c] + predicted[c]]
    return sum(correct.values()) / total, sum(f1) / len(f1)


def test_classifier_quality_matches_sklearn_in_the_api_and_the_metrics(
    log_client: TestClient, scrape_text: Callable[..., float]
) -> None:
    rows, targets = records("iris")
    rng = np.random.default_rng(5)
    picked = rng.choice(len(rows), 60, replace=False)
    # Truth: the real label, but a third of them swapped to another class, so F1 is not 1.
    classes = ["setosa", "versicolor", "virginica"]
    truths = [
        targets[i] if k % 3 else classes[(classes.index(targets[i]) + 1) % 3]
        for k, i in enumerate(picked)
    ]
    answer = predict(log_client, "iris", [rows[i] for i in picked], "batch")
    predicted = [p["prediction"] for p in answer["predictions"]]
    items = [{"request_id": "batch", "row": k, "truth": t} for k, t in enumerate(truths)]
    assert feedback(log_client, "iris", items)["accepted"] == 60
    quality = log_client.get("/models/iris/quality").json()
    assert quality["model"] == "iris"
    assert quality["task"] == "classification"
    assert quality["window_seconds"] == 3600
    (v2,) = quality["versions"]
    assert v2["version"] == 2
    assert v2["rows"] == 60
    assert v2["accuracy"] == pytest.approx(accuracy_score(truths, predicted))
    assert v2["macro_f1"] == pytest.approx(f1_score(truths, predicted, average="macro"))
    assert v2["mae"] is None
    assert 0.2 < v2["accuracy"] < 0.9  # the swap made the numbers non-trivial
    accuracy, macro = confusion_quality(log_client.get("/metrics").text, scrape_text, "2")
    assert accuracy == pytest.approx(accuracy_score(truths, predicted))
    assert macro == pytest.approx(f1_score(truths, predicted, average="macro"))


def test_regressor_mae_matches_sklearn_in_the_api_and_the_metrics(
    log_client: TestClient, scrape: Callable[..., float]
) -> None:
    rows, targets = records("diabetes")
    answer = predict(log_client, "diabetes", rows[:50], "reg")
    predicted = [p["prediction"] for p in answer["predictions"]]
    items = [{"request_id": "reg", "row": k, "truth": t} for k, t in enumerate(targets[:50])]
    assert feedback(log_client, "diabetes", items)["accepted"] == 50
    (v1,) = log_client.get("/models/diabetes/quality").json()["versions"]
    expected = mean_absolute_error(targets[:50], predicted)
    assert v1["mae"] == pytest.approx(expected)
    assert v1["accuracy"] is None
    labels = {"model": "diabetes", "version": "1"}
    total = scrape(log_client, "tabserve_feedback_absolute_error_total", **labels)
    count = scrape(log_client, "tabserve_feedback_rows_total", **labels)
    assert count == 50
    assert total / count == pytest.approx(expected)


def test_quality_window_keeps_recent_feedback_only(log_client: TestClient) -> None:
    predict(log_client, "iris", [IRIS], "w")
    feedback(log_client, "iris", {"request_id": "w", "truth": "setosa"})
    recent = log_client.get("/models/iris/quality", params={"window_seconds": 60}).json()
    assert [v["rows"] for v in recent["versions"]] == [1]
    store = log_client.app.state.tabserve.predlog.store  # type: ignore[attr-defined]
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE feedback SET time = time - 120")
    recent = log_client.get("/models/iris/quality", params={"window_seconds": 60}).json()
    assert recent["versions"] == []
    wide = log_client.get("/models/iris/quality", params={"window_seconds": 600}).json()
    assert [v["rows"] for v in wide["versions"]] == [1]


def test_quality_series_start_at_zero_before_any_feedback(log_client: TestClient) -> None:
    # Born at 0 when the log starts, so Prometheus' increase() counts the first truths too.
    lines = log_client.get("/metrics").text.splitlines()
    assert 'tabserve_feedback_rows_total{model="iris",version="1"} 0.0' in lines
    assert (
        'tabserve_feedback_correct_total{class="virginica",model="iris",version="2"} 0.0' in lines
    )
    confusion = (
        'tabserve_feedback_confusion_total{actual="no",model="churn",predicted="yes",version="1"}'
        " 0.0"
    )
    assert confusion in lines
    assert 'tabserve_feedback_absolute_error_total{model="diabetes",version="1"} 0.0' in lines
    assert not any(
        line.startswith('tabserve_feedback_absolute_error_total{model="iris"') for line in lines
    )


def test_feedback_waits_for_rows_the_writer_is_writing_right_now(
    log_settings: Callable[..., Settings],
) -> None:
    # The writer has taken the row off its queue and is inside the database write when
    # the truth arrives: the queue is empty, yet the row is not stored yet.
    with TestClient(create_app(log_settings(predlog_flush_seconds=0.02))) as client:
        log = client.app.state.tabserve.predlog  # type: ignore[attr-defined]
        entered, release = threading.Event(), threading.Event()
        write = log.store.write

        def held_write(rows: Any) -> int:
            entered.set()
            release.wait(30)
            return write(rows)

        log.store.write = held_write
        predict(client, "iris", [IRIS], "held")
        assert entered.wait(30)
        assert log.writer.queued_rows == 0
        results: list[Any] = []
        recorder = threading.Thread(
            target=lambda: results.append(log.feedback.record("iris", [Truth("held", 0, "setosa")]))
        )
        recorder.start()
        recorder.join(0.2)  # the recorder is now waiting for the write (or has not started)
        release.set()
        recorder.join(30)
        (result,) = results[0]
        assert result.outcome is Outcome.ACCEPTED


def test_quality_since_takes_epoch_seconds_or_iso_8601_and_answers_iso_8601(
    log_client: TestClient,
) -> None:
    predict(log_client, "iris", [IRIS], "s")
    feedback(log_client, "iris", {"request_id": "s", "truth": "setosa"})
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    for since in (
        str(int(start.timestamp())),
        start.isoformat(),
        start.strftime("%Y-%m-%dT%H:%M:%S"),
    ):
        answer = log_client.get("/models/iris/quality", params={"since": since})
        assert answer.status_code == 200, answer.text
        assert datetime.fromisoformat(answer.json()["since"]) == start
        assert [v["rows"] for v in answer.json()["versions"]] == [1]
    default = log_client.get("/models/iris/quality").json()
    assert datetime.fromisoformat(default["since"]).tzinfo is not None
    both = log_client.get("/models/iris/quality", params={"since": since, "window_seconds": 60})
    assert (both.status_code, both.json()["details"][0]["field"]) == (400, "since")
    later = (start + timedelta(days=1)).isoformat()
    future = log_client.get("/models/iris/quality", params={"since": later})
    assert future.json()["details"][0]["expected"] == "a time in the last 90 days"


def test_rows_whose_write_settles_while_feedback_reads_are_found(
    log_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write commits just after feedback's first read and settles before it asks the
    writer: feedback asked first, so it flushes and reads again (seen once in CI on
    PostgreSQL under load: every item came back `unknown_request`)."""
    predict(log_client, "iris", [IRIS, IRIS], "settling")
    log = log_client.app.state.tabserve.predlog  # type: ignore[attr-defined]
    read = log.store.find
    first = True

    def find_then_settle(model: str, keys: Any) -> Any:
        nonlocal first
        found = read(model, keys)
        if first:
            first = False
            assert log.writer.flush()  # the write lands after the read: it saw nothing
        return found

    monkeypatch.setattr(log.store, "find", find_then_settle)
    items = [{"request_id": "settling", "row": r, "truth": "setosa"} for r in range(2)]
    body = feedback(log_client, "iris", items)
    assert body["accepted"] == 2, body
