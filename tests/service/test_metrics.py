"""`/metrics`: app-owned series with exact values, valid exposition format."""

from __future__ import annotations

import gc
import shutil
import subprocess

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tabserve.service.app import create_app
from tabserve.service.settings import Settings

IRIS = [5.1, 3.5, 1.4, 0.2]


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by name and label set."""
    text = client.get("/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_requests_rows_and_classes_are_counted_exactly(client: TestClient) -> None:
    for _ in range(3):
        assert (
            client.post("/v1/models/iris:predict", json={"instances": [IRIS, IRIS]}).status_code
            == 200
        )
    found = samples(client)
    route = {"route": "/v1/models/{model}:predict", "method": "POST", "status": "200"}
    assert value(found, "tabserve_http_requests_total", **route) == 3
    assert value(found, "tabserve_inference_rows_total", model="iris", version="2") == 6
    assert value(found, "tabserve_inference_batch_rows_count", model="iris", version="2") == 3
    assert (
        value(found, "tabserve_predictions_total", model="iris", version="2", **{"class": "setosa"})
        == 6
    )
    assert value(found, "tabserve_inference_duration_seconds_count", model="iris", version="2") == 3


def test_model_info_and_load_duration_per_version(client: TestClient) -> None:
    found = samples(client)
    infos = {
        dict(labels)["version"]: v
        for (name, labels), v in found.items()
        if name == "tabserve_model_info" and dict(labels)["model"] == "iris"
    }
    assert infos == {"1": 1.0, "2": 1.0}
    assert value(found, "tabserve_model_load_duration_seconds", model="iris", version="1") > 0


def test_validation_errors_by_model_and_reason(client: TestClient) -> None:
    client.post("/v1/models/iris:predict", json={"instances": [[1, "x", 2, 3]]})
    client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3]]})
    client.post("/v1/models/nope:predict", json={"instances": [[1, 2, 3]]})
    found = samples(client)
    assert value(found, "tabserve_validation_errors_total", model="iris", reason="type") == 1
    assert value(found, "tabserve_validation_errors_total", model="iris", reason="shape") == 1


def test_out_of_range_values_are_served_and_counted_per_feature(client: TestClient) -> None:
    response = client.post(
        "/v1/models/iris:predict", json={"instances": [[50.0, 3.0, 1.0, 0.2]] * 2}
    )
    assert response.status_code == 200
    found = samples(client)
    labels = {"model": "iris", "version": "2"}
    assert (
        value(found, "tabserve_out_of_range_values_total", feature="sepal_length_cm", **labels) == 2
    )
    assert (
        value(found, "tabserve_out_of_range_values_total", feature="sepal_width_cm", **labels) == 0
    )


def test_values_on_the_training_bounds_are_in_range(settings: Settings) -> None:
    """The one-comparison accept path agrees with the full check at the edges."""
    with TestClient(create_app(settings)) as client:
        served = client.get("/models/iris").json()["versions"][1]
        low = [f["min"] for f in served["features"]]
        high = [f["max"] for f in served["features"]]
        above = [*high[:3], high[3] + 1e-9]

        def infer(rows: list[list[float]]) -> int:
            tensor = {"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}
            return client.post("/v2/models/iris/infer", json={"inputs": [tensor]}).status_code

        assert infer([low, high]) == 200
        assert infer([above]) == 200
        found = samples(client)
    labels = {"model": "iris", "version": "2"}
    counted = {
        feature: value(found, "tabserve_out_of_range_values_total", feature=feature, **labels)
        for feature in ("sepal_length_cm", "petal_width_cm")
    }
    assert counted == {"sepal_length_cm": 0, "petal_width_cm": 1}


def test_out_of_range_can_be_refused_instead(settings: Settings) -> None:
    strict = settings.model_copy(update={"reject_out_of_range": True})
    with TestClient(create_app(strict)) as client:
        response = client.post(
            "/v1/models/iris:predict", json={"instances": [[50.0, 3.0, 1.0, 0.2]]}
        )
    assert response.status_code == 400
    assert response.json()["error"] == (
        "feature 'sepal_length_cm' (index 0), row 0: expected a value within the training "
        "range [4.3, 7.9], got 50.0"
    )


def test_two_apps_do_not_share_metrics(settings: Settings) -> None:
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        first.post("/v1/models/iris:predict", json={"instances": [IRIS]})
        assert (
            value(samples(second), "tabserve_inference_rows_total", model="iris", version="2") == 0
        )
        assert (
            value(samples(first), "tabserve_inference_rows_total", model="iris", version="2") == 1
        )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_exposition_passes_promtool(client: TestClient) -> None:
    client.post("/v1/models/iris:predict", json={"instances": [IRIS]})
    client.post("/models/iris/predict", json={"bad": 1})
    text = client.get("/metrics").text
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_loaded_models_are_frozen_out_of_garbage_collection(settings: Settings) -> None:
    """Full collections must not walk the models' objects (their pauses set the p99)."""
    with TestClient(create_app(settings)) as client:
        model = client.app.state.tabserve.dataplane.model("iris", 1)  # type: ignore[attr-defined]
        assert gc.get_freeze_count() > 0
        collected = {id(o) for o in gc.get_objects()}
        assert id(model.manifest) not in collected
        assert id(model.schema) not in collected


def _exposition(settings: Settings) -> list[str]:
    with TestClient(create_app(settings)) as client:
        client.post("/v1/models/iris:predict", json={"instances": [IRIS]})
        return client.get("/metrics").text.splitlines()


def test_created_series_are_off_unless_asked_for(settings: Settings) -> None:
    plain = _exposition(settings)
    assert [line for line in plain if "_created" in line] == []
    assert any(line.startswith("tabserve_http_requests_total{") for line in plain)
    asked = _exposition(settings.model_copy(update={"metrics_created_series": True}))
    assert any(line.startswith("tabserve_http_requests_created{") for line in asked)
    assert any(line.startswith("tabserve_inference_duration_seconds_created{") for line in asked)


def test_one_worker_exports_the_six_process_families_the_readme_lists(client: TestClient) -> None:
    text = client.get("/metrics").text
    process = {
        f.name for f in text_string_to_metric_families(text) if f.name.startswith("process_")
    }
    assert process == {
        "process_cpu_seconds",
        "process_max_fds",
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_virtual_memory_bytes",
    }
