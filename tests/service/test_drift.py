"""Drift through the real lifespan: PSI, missing and out-of-range rates, window, counters."""

from __future__ import annotations

import math
import shutil
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tabserve.service.app import create_app
from tabserve.service.core.drift import MAX_WAITING_ROWS
from tabserve.service.core.drift_totals import counter_totals
from tabserve.service.core.registry import ModelVersion
from tabserve.service.core.runtime import Prediction
from tabserve.service.settings import Settings
from tabserve.training.datasets import load_bundled
from tests.service.support import queue_behind_held_call

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules" / "drift.rules.yml"
IRIS_FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
SHIFTED = "petal_length_cm"
IRIS_V2 = 'job="tabserve", model="iris", namespace="ml", version="2"'
CHURN_ROW = {"age": 40, "city": "berlin", "income": 3000.0}


def iris_rows(shift: float = 0.0) -> npt.NDArray[np.float64]:
    """The iris training data itself; petal length moved by `shift` standard deviations."""
    rows = load_bundled("iris").features.copy()
    column = IRIS_FEATURES.index(SHIFTED)
    rows[:, column] += shift * rows[:, column].std()
    return rows


def send(client: TestClient, model: str, rows: npt.NDArray[np.float64], chunk: int = 50) -> None:
    """All `rows` through the V2 API, `chunk` rows per request."""
    for start in range(0, rows.shape[0], chunk):
        part = rows[start : start + chunk]
        body = {
            "inputs": [
                {"name": "x", "shape": list(part.shape), "datatype": "FP64", "data": part.tolist()}
            ]
        }
        answer = client.post(f"/v2/models/{model}/infer", json=body)
        assert answer.status_code == 200, answer.text


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in report["features"]}


def samples(client: TestClient, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of `metric` in the exposition, by its sorted labels."""
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == metric:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_a_shifted_feature_drifts_and_the_others_stay_put(client: TestClient) -> None:
    send(client, "iris", iris_rows(shift=3.0))
    answer = client.get("/models/iris/drift")
    assert answer.status_code == 200
    report = answer.json()
    features = by_name(report)
    assert report["model"] == "iris"
    assert report["version"] == 2  # the default version
    assert report["rows"] == 150
    assert features[SHIFTED]["psi"] > 0.2
    assert features[SHIFTED]["drifting"] is True
    for name in set(IRIS_FEATURES) - {SHIFTED}:
        assert features[name]["psi"] < 0.2, (name, features[name]["psi"])
        assert features[name]["drifting"] is False
    assert report["top_drifting"] == [SHIFTED]
    # shifted by 3 std, most petal lengths lie above the training maximum (6.9)
    original = iris_rows()[:, IRIS_FEATURES.index(SHIFTED)]
    moved = iris_rows(3.0)[:, IRIS_FEATURES.index(SHIFTED)]
    assert features[SHIFTED]["out_of_range_rate"] == pytest.approx(
        float((moved > original.max()).mean())
    )
    for name in IRIS_FEATURES:
        assert features[name]["rows"] == 150
        assert features[name]["missing_rate"] == 0.0
        assert sum(b["rows"] for b in features[name]["bins"]) == 150
        assert sum(b["reference"] for b in features[name]["bins"]) == pytest.approx(1.0)
    # the model now sees long petals everywhere: its predictions drift too
    prediction = report["prediction"]
    assert prediction["type"] == "category"
    assert [b["label"] for b in prediction["bins"]] == [
        "setosa",
        "versicolor",
        "virginica",
        "<unseen>",
    ]
    assert prediction["psi"] > 0.2


def test_a_few_rows_report_psi_but_nothing_drifts_below_min_rows(client: TestClient) -> None:
    send(client, "iris", iris_rows(shift=3.0)[:99], chunk=33)
    report = client.get("/models/iris/drift").json()
    assert report["min_rows"] == 100
    assert report["rows"] == 99
    assert by_name(report)[SHIFTED]["psi"] > 0.2
    assert by_name(report)[SHIFTED]["drifting"] is False
    assert report["top_drifting"] == []
    send(client, "iris", iris_rows(shift=3.0)[99:100], chunk=1)
    report = client.get("/models/iris/drift").json()
    assert report["rows"] == 100
    # the first 100 iris rows hold two of three classes, so petal width moves too
    assert report["top_drifting"][0] == SHIFTED


def test_the_training_data_itself_does_not_drift(client: TestClient) -> None:
    send(client, "iris", iris_rows())
    report = client.get("/models/iris/drift").json()
    for feature in report["features"]:
        assert feature["psi"] < 0.2, feature
        assert feature["out_of_range_rate"] == 0.0
    assert report["prediction"]["psi"] < 0.2
    assert report["top_drifting"] == []


def test_psi_is_the_documented_formula_over_the_bins(client: TestClient) -> None:
    send(client, "iris/versions/1", iris_rows(shift=1.0))
    for feature in client.get("/models/iris/drift?version=1").json()["features"]:
        rows = np.array([b["rows"] for b in feature["bins"]], dtype=np.float64)
        live = np.maximum(rows / rows.sum(), 1e-4)
        expected = np.maximum([b["reference"] for b in feature["bins"]], 1e-4)
        assert feature["psi"] == pytest.approx(
            float(((live - expected) * np.log(live / expected)).sum())
        )


def test_bins_are_counted_exactly_in_the_metrics(client: TestClient) -> None:
    rows = iris_rows(shift=3.0)
    send(client, "iris", rows)
    counted = samples(client, "tabserve_drift_rows_total")
    manifest = client.app.state.tabserve.registry.ready("iris", 2).manifest  # type: ignore[attr-defined]
    for index, feature in enumerate(manifest.features):
        mine = {
            dict(k)["bin"]: v
            for k, v in counted.items()
            if dict(k)["feature"] == feature.name and dict(k)["version"] == "2"
        }
        edges = feature.stats.histogram.edges
        bins = np.searchsorted(edges, rows[:, index], side="right")
        expected = np.bincount(bins, minlength=len(edges) + 1).tolist()
        assert list(mine.values()) == [*expected, 0]  # the histogram's bins, then <missing>
        assert list(mine)[-1] == "<missing>"
    reference = samples(client, "tabserve_drift_reference_ratio")
    shares = [
        v for k, v in reference.items() if ("feature", SHIFTED) in k and ("version", "2") in k
    ]
    assert sum(shares) == pytest.approx(1.0)
    predicted = {
        dict(k)["bin"]: v
        for k, v in samples(client, "tabserve_drift_prediction_rows_total").items()
        if ("version", "2") in k
    }
    by_class = {
        dict(k)["class"]: v
        for k, v in samples(client, "tabserve_predictions_total").items()
        if ("version", "2") in k
    }
    assert predicted == {**by_class, "<unseen>": 0.0}
    assert sum(predicted.values()) == 150


def test_coalesced_requests_are_counted_once_each(client: TestClient, hold: Any) -> None:
    rows = iris_rows()
    requests = [partial(send, client, "iris", rows[i : i + 3], 3) for i in range(0, 18, 3)]
    # five requests (15 rows) wait for one call
    queue_behind_held_call(client, hold("iris"), "iris", requests, queued_rows=15)
    report = client.get("/models/iris/drift").json()
    assert report["rows"] == 18
    assert (
        samples(client, "tabserve_inference_batch_rows_count")[
            (("model", "iris"), ("version", "2"))
        ]
        == 2
    )
    for feature in report["features"]:
        assert sum(b["rows"] for b in feature["bins"]) == 18


def test_missing_and_out_of_range_rates(client: TestClient) -> None:
    records = [dict(CHURN_ROW) for _ in range(20)]
    for i in range(4):
        records[i]["income"] = None
    for i in range(4, 6):
        records[i]["city"] = None
    for i in range(6, 9):
        records[i]["age"] = 200  # training ages are 18 to 79
    answer = client.post("/models/churn/predict", json=records)
    assert answer.status_code == 200, answer.text
    report = client.get("/models/churn/drift").json()
    features = by_name(report)
    assert report["rows"] == 20
    assert features["income"]["missing_rate"] == pytest.approx(4 / 20)
    assert features["city"]["missing_rate"] == pytest.approx(2 / 20)
    assert features["age"]["missing_rate"] == 0.0
    assert features["age"]["out_of_range_rate"] == pytest.approx(3 / 20)
    assert features["income"]["out_of_range_rate"] == 0.0
    assert features["city"]["out_of_range_rate"] is None  # categorical: no range
    city = {b["label"]: b for b in features["city"]["bins"]}
    assert list(city) == ["berlin", "lisbon", "paris", "<unseen>", "<missing>"]
    assert [city[c]["rows"] for c in city] == [18, 0, 0, 0, 2]
    assert city["<unseen>"]["reference"] == 0.0
    assert city["<missing>"]["reference"] > 0  # training had cities missing too
    counted = samples(client, "tabserve_drift_rows_total")
    assert (
        counted[(("bin", "<missing>"), ("feature", "income"), ("model", "churn"), ("version", "1"))]
        == 4
    )
    out_of_range = samples(client, "tabserve_out_of_range_values_total")
    assert out_of_range[(("feature", "age"), ("model", "churn"), ("version", "1"))] == 3


def test_an_unseen_category_counts_in_its_own_bin(client: TestClient) -> None:
    # The APIs refuse a category training never saw (400), so it is never served and
    # never counted; it would reach the call listeners only if validation let it through.
    refused = client.post("/models/churn/predict", json={**CHURN_ROW, "city": "tokyo"})
    assert refused.status_code == 400
    assert by_name(client.get("/models/churn/drift").json())["city"]["rows"] == 0
    state = client.app.state.tabserve  # type: ignore[attr-defined]
    model = state.registry.ready("churn")
    rows = np.array(
        [[40.0, "tokyo", 3000.0], [41.0, "tokyo", None], [42.0, "paris", 1.0]], dtype=object
    )
    prediction = Prediction(
        np.array(["no", "yes", "no"]), np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    )
    client.portal.call(state.drift.observe, model, rows, prediction)  # type: ignore[union-attr]
    features = by_name(client.get("/models/churn/drift").json())
    city = {b["label"]: b["rows"] for b in features["city"]["bins"]}
    assert city == {"berlin": 0, "lisbon": 0, "paris": 1, "<unseen>": 2, "<missing>": 0}
    assert features["city"]["psi"] > 0.2
    assert features["income"]["missing_rate"] == pytest.approx(1 / 3)


def test_the_window_forgets_rows_older_than_it(settings: Settings) -> None:
    app = create_app(
        settings.model_copy(update={"drift_window_seconds": 60.0, "drift_flush_seconds": 60.0})
    )
    monitor = app.state.tabserve.drift
    # A whole number of seconds, so start + 30 and start + 90 are exact floats: the
    # monotonic clock's own reading near a power of two would round them. Past the old
    # window, so the lifespan's start() begins a fresh window at it.
    now = [float(math.ceil(monitor.started)) + 120.0]
    monitor.clock = lambda: now[0]
    with TestClient(app) as client:
        send(client, "iris", iris_rows(shift=3.0))
        now[0] += 30
        early = client.get("/models/iris/drift").json()
        assert early["rows"] == 150
        assert early["covered_seconds"] == 30.0
        assert by_name(early)[SHIFTED]["psi"] > 0.2
        now[0] += 60
        send(client, "iris", iris_rows())
        late = client.get("/models/iris/drift").json()
    # the window now starts at the snapshot taken 60 s ago, after the shifted rows
    assert late["window_seconds"] == 60.0
    assert late["covered_seconds"] == 60.0
    assert late["rows"] == 150
    assert by_name(late)[SHIFTED]["psi"] < 0.2
    assert late["top_drifting"] == []


def test_counts_buffered_at_shutdown_reach_the_counters(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"drift_flush_seconds": 60.0}))
    series = app.state.tabserve.drift.series
    with TestClient(app) as client:
        send(client, "iris", iris_rows())
    # no scrape and no timer tick since the requests: the shutdown flushed them
    totals = counter_totals([series.rows])["tabserve_drift_rows"]
    iris = [
        v
        for labels, v in totals.items()
        if ("model", "iris") in labels and ("version", "2") in labels
    ]
    assert sum(iris) == 150 * len(IRIS_FEATURES)


def test_calls_wait_for_the_flush_until_too_many_rows_wait(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"drift_flush_seconds": 60.0}))
    state = app.state.tabserve
    rows = np.tile(iris_rows()[:1], (MAX_WAITING_ROWS - 1, 1))
    prediction = Prediction(np.array(["setosa"] * len(rows)), np.tile([1.0, 0, 0], (len(rows), 1)))

    def counted() -> float:
        found = counter_totals([state.drift.series.prediction_rows])
        return sum(
            v for k, v in found["tabserve_drift_prediction_rows"].items() if ("version", "2") in k
        )

    with TestClient(app) as client:
        model = state.registry.ready("iris")
        client.portal.call(state.drift.observe, model, rows, prediction)
        assert counted() == 0  # kept for the next flush: the call itself counted nothing
        one = Prediction(prediction.predict[:1], prediction.proba[:1])  # type: ignore[index]
        client.portal.call(state.drift.observe, model, rows[:1], one)
        assert counted() == MAX_WAITING_ROWS  # at the limit: binned at once, exactly


def test_a_counting_failure_stops_counting_that_version_only(client: TestClient) -> None:
    state = client.app.state.tabserve  # type: ignore[attr-defined]
    model = state.registry.ready("iris")
    wrong = np.zeros((2, 7))  # not the model's width: binning it fails
    client.portal.call(state.drift.observe, model, wrong, Prediction(np.zeros(2)))
    assert client.get("/metrics").status_code == 200  # the flush failed quietly
    broken = client.get("/models/iris/drift")
    assert broken.status_code == 503
    assert broken.json()["code"] == "model_not_ready"
    assert "counting failed" in broken.json()["error"]
    send(client, "iris", iris_rows()[:10])  # the model still serves
    assert client.get("/models/iris/drift?version=1").status_code == 200


def test_drift_off_means_409_no_series_and_no_listener(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"drift_enabled": False}))
    with TestClient(app) as client:
        send(client, "iris", iris_rows()[:10])
        assert client.get("/models/iris/drift").status_code == 409
        assert client.app.state.tabserve.dataplane.call_listeners == []  # type: ignore[attr-defined]
        assert not [
            name
            for name in ("tabserve_drift_rows_total", "tabserve_drift_reference_ratio")
            if samples(client, name)
        ]
        assert "/models/{model}/drift" in client.get("/openapi.json").json()["paths"]


def test_unknown_model_or_version_is_404_and_a_failed_version_503(
    client: TestClient, models_dir: Path
) -> None:
    unknown = client.get("/models/nope/drift")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "model_not_found"
    assert client.get("/models/iris/drift?version=9").status_code == 404
    assert client.get("/models/iris/drift?version=0").status_code == 422
    registry = client.app.state.tabserve.registry  # type: ignore[attr-defined]
    registry.add(ModelVersion.failed("iris", 1, Path("iris/1"), "sklearn", "lost its disk"))
    not_ready = client.get("/models/iris/drift?version=1")
    assert not_ready.status_code == 503
    assert not_ready.json()["code"] == "model_not_ready"


def test_the_route_is_documented_with_its_response_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/models/{model}/drift"]["get"]
    assert set(route["responses"]) >= {"200", "404", "503"}
    schema = spec["components"]["schemas"]["DriftResponse"]
    assert schema["example"]["top_drifting"] == ["petal_length_cm"]
    assert {"psi", "missing_rate", "out_of_range_rate", "bins"} <= set(
        spec["components"]["schemas"]["FeatureDrift"]["properties"]
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_the_recording_rules_compute_the_same_psi(client: TestClient, tmp_path: Path) -> None:
    """The counters of a real app, fed to promtool: the rules' PSI is the route's."""
    send(client, "iris", iris_rows(shift=3.0))
    report = client.get("/models/iris/drift").json()
    series = []
    for metric, minutes in (
        ("tabserve_drift_rows_total", "{v:g}x40"),
        ("tabserve_drift_prediction_rows_total", "{v:g}x40"),
    ):
        for labels, value in samples(client, metric).items():
            if ("model", "iris") in labels and ("version", "2") in labels:
                series.append(
                    {
                        "series": _selector(metric, labels),
                        "values": "0x30 " + minutes.format(v=value),
                    }
                )
    for metric in ("tabserve_drift_reference_ratio", "tabserve_drift_prediction_reference_ratio"):
        for labels, value in samples(client, metric).items():
            if ("model", "iris") in labels and ("version", "2") in labels:
                series.append({"series": _selector(metric, labels), "values": f"{value!r}x70"})
    checks = []
    for feature in report["features"]:
        where = f'{{feature="{feature["name"]}"}}'
        labels = f'{{feature="{feature["name"]}", {IRIS_V2}}}'
        checks.append(
            _check(f"abs(tabserve:drift_psi:1h{where} - {feature['psi']!r}) < bool 1e-9", labels, 1)
        )
        checks.append(
            _check(
                f"tabserve:drift_psi:1h{where} > bool 0.2", labels, int(feature["name"] == SHIFTED)
            )
        )
    labels = f"{{{IRIS_V2}}}"
    psi = report["prediction"]["psi"]
    checks.append(_check(f"abs(tabserve:drift_prediction_psi:1h - {psi!r}) < bool 1e-9", labels, 1))
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}],
    }
    path = tmp_path / "drift.test.yml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _selector(metric: str, labels: tuple[tuple[str, str], ...]) -> str:
    pairs = [("job", "tabserve"), ("namespace", "ml"), *labels]
    return metric + "{" + ", ".join(f'{k}="{v}"' for k, v in pairs) + "}"


def _check(expr: str, labels: str, value: int) -> dict[str, Any]:
    return {"expr": expr, "eval_time": "70m", "exp_samples": [{"labels": labels, "value": value}]}
