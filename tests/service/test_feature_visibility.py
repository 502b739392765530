"""Every documented route is in the API whatever the settings; a feature that is off says so.

With the prediction log off (the default), drift counting off or no admin token,
their routes stay in `/openapi.json` and answer 409 `feature_disabled` in the
common error shape, naming the setting that turns the feature on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tabserve.service.app import create_app
from tabserve.service.settings import Settings

OFF = {"predlog_mode": "off", "drift_enabled": False, "admin_token": None}
FEATURE_ROUTES = [
    ("post", "/models/iris/feedback", [{"request_id": "r", "truth": "setosa"}], "PREDLOG_MODE"),
    ("get", "/models/iris/quality", None, "TABSERVE_PREDLOG_MODE"),
    ("get", "/models/iris/predictions", None, "TABSERVE_PREDLOG_MODE"),
    ("get", "/models/iris/drift", None, "TABSERVE_DRIFT_ENABLED"),
    ("post", "/v2/repository/index", None, "TABSERVE_ADMIN_TOKEN"),
    ("post", "/v2/repository/models/iris/load", {"version": "1"}, "TABSERVE_ADMIN_TOKEN"),
    ("post", "/v2/repository/models/iris/unload", {"version": "1"}, "TABSERVE_ADMIN_TOKEN"),
    ("put", "/v2/repository/models/iris/default", {"version": "1"}, "TABSERVE_ADMIN_TOKEN"),
]
DOCUMENTED = {
    ("post", "/models/{model}/feedback"),
    ("get", "/models/{model}/quality"),
    ("get", "/models/{model}/predictions"),
    ("get", "/models/{model}/drift"),
    ("post", "/v2/repository/index"),
    ("post", "/v2/repository/models/{model}/load"),
    ("post", "/v2/repository/models/{model}/unload"),
    ("put", "/v2/repository/models/{model}/default"),
}


def _operations(client: TestClient) -> set[tuple[str, str]]:
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    return {(method, path) for path, methods in paths.items() for method in methods}


def _settings(models_dir: Path, tmp_path: Path, **values: Any) -> Settings:
    return Settings(models_dir=models_dir, inference_threads=1, data_dir=tmp_path, **values)


def test_the_openapi_document_is_the_same_with_every_feature_off_or_on(
    models_dir: Path, tmp_path: Path
) -> None:
    on = _settings(
        models_dir, tmp_path, predlog_mode="all", drift_enabled=True, admin_token="t0ken"
    )
    with TestClient(create_app(_settings(models_dir, tmp_path, **OFF))) as off_client:
        off = _operations(off_client)
    with TestClient(create_app(on)) as on_client:
        assert _operations(on_client) == off
    assert off >= DOCUMENTED


@pytest.mark.parametrize(("method", "path", "body", "setting"), FEATURE_ROUTES)
def test_a_route_of_a_feature_that_is_off_answers_409_naming_its_setting(
    models_dir: Path, tmp_path: Path, method: str, path: str, body: Any, setting: str
) -> None:
    setting = setting if setting.startswith("TABSERVE_") else f"TABSERVE_{setting}"
    with TestClient(create_app(_settings(models_dir, tmp_path, **OFF))) as client:
        answer = client.request(method, path, json=body)
    assert answer.status_code == 409
    error = answer.json()
    assert set(error) == {"error", "code", "details"}
    assert error["code"] == "feature_disabled"
    assert setting in error["error"]
    assert [d["field"] for d in error["details"]] == [setting]


def test_without_an_admin_token_no_credentials_open_the_admin_routes(
    models_dir: Path, tmp_path: Path
) -> None:
    with TestClient(create_app(_settings(models_dir, tmp_path))) as client:
        for header in ("Bearer ", "Bearer None", "Bearer null", "Basic Og=="):
            answer = client.post("/v2/repository/index", headers={"Authorization": header})
            assert answer.status_code == 409, header
            assert answer.json()["code"] == "feature_disabled"
        served = client.get("/v2/models/iris/ready")
    assert served.status_code == 200  # nothing was unloaded


def test_the_prediction_log_off_refuses_feedback_before_reading_it(
    models_dir: Path, tmp_path: Path
) -> None:
    with TestClient(create_app(_settings(models_dir, tmp_path))) as client:
        answer = client.post("/models/iris/feedback", json={"not": "feedback"})
    assert answer.status_code == 409
    assert answer.json()["details"][0] == {
        "field": "TABSERVE_PREDLOG_MODE",
        "index": None,
        "row": None,
        "value": "off",
        "expected": "`all` or `sampled`",
    }
    assert not (tmp_path / "predictions.db").exists()


def _families(client: TestClient) -> set[tuple[str, str, str]]:
    """(name, type, help) of every tabserve family, with series or without."""
    text = client.get("/metrics").text
    return {
        (f.name, f.type, f.documentation)
        for f in text_string_to_metric_families(text)
        # the parser makes each series' `_created` sample a family of its own
        if f.name.startswith("tabserve_") and not f.name.endswith("_created")
    }


def test_the_metric_families_are_the_same_with_every_feature_off_or_on(
    models_dir: Path, tmp_path: Path
) -> None:
    on = _settings(
        models_dir,
        tmp_path,
        predlog_mode="all",
        drift_enabled=True,
        sink_url="http://127.0.0.1:9/",
        tracing_enabled=True,
    )
    with TestClient(create_app(_settings(models_dir, tmp_path, **OFF))) as off_client:
        off = _families(off_client)
    with TestClient(create_app(on)) as on_client:
        assert _families(on_client) == off
    names = {name for name, _, _ in off}
    assert {
        "tabserve_drift_rows",
        "tabserve_prediction_log_rows_written",
        "tabserve_sink_events_sent",
        "tabserve_stream_rows",
        "tabserve_tracing_spans_exported",
    } <= names
