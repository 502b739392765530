"""Probes, server metadata and model loading outcomes."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.settings import Settings


def test_live_and_ready_when_every_model_loaded(client: TestClient) -> None:
    live = client.get("/v2/health/live")
    ready = client.get("/v2/health/ready")
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True, "reasons": []})


def test_server_metadata(client: TestClient) -> None:
    assert client.get("/v2").json() == {
        "name": "tabserve",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }


def _copy_models(models_dir: Path, target: Path) -> Path:
    shutil.copytree(models_dir, target)
    return target


def test_a_tampered_version_fails_alone_and_its_model_keeps_serving(
    models_dir: Path, tmp_path: Path
) -> None:
    root = _copy_models(models_dir, tmp_path / "models")
    model_file = root / "iris" / "2" / "model.joblib"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))

    with TestClient(create_app(Settings(models_dir=root))) as client:
        # iris still serves (version 1), so the server stays ready
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/models/iris/versions/2/ready").status_code == 400
        assert client.get("/v2/models/iris/versions/1/ready").status_code == 200
        listing = {m["name"]: m for m in client.get("/models").json()}
        failed = listing["iris"]["versions"][1]
        assert failed["state"] == "failed"
        assert "sha256" in failed["error"]
        # the broken newest version takes no traffic: the default falls back to v1
        row = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4}
        answer = client.post("/models/iris/predict", json={**row, "petal_width_cm": 0.2})
        assert (answer.status_code, answer.json()["version"]) == (200, 1)
        # asked for by number, it answers 503 naming the reason
        response = client.post("/v2/models/iris/versions/2/infer", json={"inputs": []})
        assert response.status_code == 503
        assert response.json()["code"] == "model_not_ready"
        assert "modified" in response.json()["error"]
        # the other models still serve
        assert client.get("/v2/models/diabetes/ready").status_code == 200
        metrics = client.get("/metrics").text
        assert 'tabserve_model_load_failures_total{model="iris"} 1.0' in metrics


def test_a_model_that_never_loaded_leaves_the_server_ready(
    models_dir: Path, tmp_path: Path
) -> None:
    root = _copy_models(models_dir, tmp_path / "models")
    (root / "diabetes" / "1" / "model.joblib").write_bytes(b"not a model")
    with TestClient(create_app(Settings(models_dir=root))) as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/models/diabetes/ready").status_code == 400
        assert client.get("/v2/models/iris/ready").status_code == 200


def test_no_models_means_live_but_not_ready(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tmp_path))) as client:
        assert client.get("/v2/health/live").status_code == 200
        ready = client.get("/v2/health/ready")
        assert (ready.status_code, ready.json()["reasons"]) == (400, ["no models loaded"])
        assert client.get("/models").json() == []


def test_request_id_is_generated_when_absent_or_unsafe(client: TestClient) -> None:
    generated = client.get("/v2").headers["x-request-id"]
    assert len(generated) == 32
    unsafe = client.get("/v2", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


def test_unknown_route_gets_the_json_error_shape(client: TestClient) -> None:
    response = client.get("/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found", "code": "not_found", "details": []}


def test_docs_pages_use_packaged_assets_not_a_cdn(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn.jsdelivr.net" not in html
        assert "/static-offline-docs/" in html
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static-offline-docs/redoc.standalone.js").status_code == 200
