"""Readiness: one bad model folder never takes the pod out of rotation.

The pod is ready while some model serves and every model that served still does;
a version that never loaded is reported (`GET /models`, metrics) instead, and the
directory poller forgets a version whose folder is removed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tests.service.conftest import ServerProcess

ROW = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}


def _bad_upload(root: Path) -> None:
    """The issue's mistake: a model file with no manifest beside it."""
    version = root / "mychurn2" / "1"
    version.mkdir(parents=True)
    (version / "model.joblib").write_bytes(b"not a model")


def _states(get: Callable[[str], httpx.Response]) -> dict[str, list[str]]:
    return {m["name"]: [v["state"] for v in m["versions"]] for m in get("/models").json()}


def _wait_for(condition: Callable[[], bool]) -> None:
    """Until the poller has acted (the test's own timeout bounds the wait)."""
    while not condition():
        time.sleep(0.02)


def test_a_bad_upload_keeps_the_pod_ready_and_is_forgotten_once_removed(
    models_dir: Path, tmp_path: Path
) -> None:
    root = shutil.copytree(models_dir, tmp_path / "models")
    settings = Settings(models_dir=root, poll_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v2/health/ready").json() == {"ready": True, "reasons": []}
        _bad_upload(root)
        _wait_for(lambda: "mychurn2" in _states(client.get))

        assert _states(client.get)["mychurn2"] == ["failed"]
        ready = client.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "reasons": []})
        assert client.post("/models/iris/predict", json=ROW).status_code == 200
        metrics = client.get("/metrics").text.splitlines()
        assert 'tabserve_model_versions_failed{model="mychurn2"} 1.0' in metrics

        shutil.rmtree(root / "mychurn2")
        _wait_for(lambda: "mychurn2" not in _states(client.get))

        assert client.get("/v2/health/ready").status_code == 200
        metrics = client.get("/metrics").text.splitlines()
        assert 'tabserve_model_versions_failed{model="mychurn2"} 0.0' in metrics
        assert client.get("/v2/models/mychurn2/ready").status_code == 404


def test_a_removed_version_that_served_is_forgotten_too(models_dir: Path, tmp_path: Path) -> None:
    root = shutil.copytree(models_dir, tmp_path / "models")
    with TestClient(create_app(Settings(models_dir=root))) as client:
        repository = client.app.state.tabserve.repository  # type: ignore[attr-defined]
        shutil.rmtree(root / "iris" / "2")
        assert client.portal.call(repository.follow_directory) is True
        assert _states(client.get)["iris"] == ["ready"]
        answer = client.post("/models/iris/predict", json=ROW)
        assert (answer.status_code, answer.json()["version"]) == (200, 1)
        assert client.post("/models/iris/versions/2/predict", json=ROW).status_code == 404


def test_an_unmounted_models_directory_forgets_nothing(models_dir: Path, tmp_path: Path) -> None:
    root = shutil.copytree(models_dir, tmp_path / "models")
    with TestClient(create_app(Settings(models_dir=root))) as client:
        before = _states(client.get)
        repository = client.app.state.tabserve.repository  # type: ignore[attr-defined]
        root.rename(tmp_path / "elsewhere")
        assert client.portal.call(repository.follow_directory) is False
        assert _states(client.get) == before
        assert client.get("/v2/health/ready").status_code == 200


def test_a_model_that_stops_serving_unreadies_the_pod_and_says_why(
    models_dir: Path, tmp_path: Path
) -> None:
    root = shutil.copytree(models_dir, tmp_path / "models")
    (root / "iris" / "2" / "model.joblib").write_bytes(b"tampered")
    with TestClient(create_app(Settings(models_dir=root))) as client:
        assert client.get("/v2/health/ready").status_code == 200  # iris serves with v1
        repository = client.app.state.tabserve.repository  # type: ignore[attr-defined]
        repository.unload("iris", 1)  # what the admin API does
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 400
        [reason] = ready.json()["reasons"]
        assert reason.startswith("model 'iris' served, but its default version 2 is failed: ")
        assert ready.json()["ready"] is False


def test_no_model_that_can_serve_answers_400_naming_the_failures(
    models_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_dir / "diabetes", root / "diabetes")
    (root / "diabetes" / "1" / "model.joblib").write_bytes(b"not a model")
    with TestClient(create_app(Settings(models_dir=root))) as client:
        ready = client.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (
            400,
            {"ready": False, "reasons": ["no model can serve (failed: diabetes)"]},
        )


def test_a_real_server_stays_ready_through_a_bad_upload_and_its_removal(
    models_dir: Path, tmp_path: Path, launch: Callable[..., ServerProcess]
) -> None:
    root = shutil.copytree(models_dir, tmp_path / "models")
    server = launch(root, env={"TABSERVE_POLL_SECONDS": "0.1"})

    def get(path: str) -> httpx.Response:
        return httpx.get(server.url + path, timeout=10)

    _bad_upload(root)
    _wait_for(lambda: "mychurn2" in _states(get))
    assert get("/v2/health/ready").json() == {"ready": True, "reasons": []}
    shutil.rmtree(root / "mychurn2")
    _wait_for(lambda: "mychurn2" not in _states(get))
    assert get("/v2/health/ready").status_code == 200
    assert "model mychurn2 version 1 forgotten" in server.log.read_text()


def test_failed_models_are_not_listed_as_served(
    models_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root = shutil.copytree(models_dir, tmp_path / "models")
    _bad_upload(root)
    with TestClient(create_app(Settings(models_dir=root))) as client:
        missing = client.post("/models/nosuch/predict", json=ROW).json()["error"]
    served = "models served: churn, diabetes, iris; not serving (GET /models says why): mychurn2"
    assert missing == f"model 'nosuch' not found; {served}"
    assert f"INFO tabserve.models: {served} (from {root})\n" in capfd.readouterr().err
