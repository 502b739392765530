"""TABSERVE_ARTIFACT_PUBLIC_KEY: the service serves only artifacts signed with its key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train

ROW = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}


@pytest.fixture
def signed_store(tmp_path: Path) -> tuple[Path, Path]:
    """iris v1 unsigned, v2 signed; returns (models dir, public key PEM file)."""
    key = Ed25519PrivateKey.generate()
    public = tmp_path / "signing.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    models = tmp_path / "models"
    iris = load_bundled("iris")
    train(TrainRequest(iris, "logistic_regression", models, "iris"))
    train(TrainRequest(iris, "logistic_regression", models, "iris", signing_key=key))
    return models, public


def _states(client: TestClient) -> dict[int, tuple[str, str | None]]:
    versions = client.get("/models/iris").json()["versions"]
    return {v["version"]: (v["state"], v["error"]) for v in versions}


def test_with_a_public_key_only_signed_versions_serve(signed_store: tuple[Path, Path]) -> None:
    models, public = signed_store
    settings = Settings(models_dir=models, inference_threads=1, artifact_public_key=public)
    with TestClient(create_app(settings)) as client:
        states = _states(client)
        assert states[2] == ("ready", None)
        assert states[1][0] == "failed"
        assert "the artifact is not signed; artifact_public_key is set" in str(states[1][1])
        answer = client.post("/models/iris/predict", json=ROW)
        assert (answer.status_code, answer.json()["version"]) == (200, 2)


def test_without_a_key_an_edited_manifest_fails_its_version(
    signed_store: tuple[Path, Path],
) -> None:
    models, _ = signed_store
    path = models / "iris" / "2" / "model.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    first, second = manifest["features"][:2]
    first["name"], second["name"] = second["name"], first["name"]
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with TestClient(create_app(Settings(models_dir=models, inference_threads=1))) as client:
        states = _states(client)
        assert states[1] == ("ready", None)
        assert states[2][0] == "failed"
        assert "the manifest was modified after export" in str(states[2][1])
        assert client.post("/models/iris/predict", json=ROW).json()["version"] == 1
