"""Hardening through the real app: refused artifacts, input limits, error bodies, headers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

IRIS_ROW = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}

# refused artifacts --------------------------------------------------------------------


def _flip_a_byte(version: Path) -> None:
    model = version / "model.joblib"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))


def _path_in_manifest(version: Path) -> None:
    manifest = json.loads((version / "model.json").read_text())
    manifest["artifact"]["file"] = "../../../outside/model.joblib"
    (version / "model.json").write_text(json.dumps(manifest))


def _model_symlinked_outside(version: Path) -> None:
    outside = version.parents[2] / "outside" / "model.joblib"
    shutil.move(version / "model.joblib", outside)
    (version / "model.joblib").symlink_to(outside)


def _folder_symlinked_outside(version: Path) -> None:
    outside = version.parents[2] / "outside" / "3"
    shutil.move(version, outside)
    version.symlink_to(outside, target_is_directory=True)


ATTACKS: list[tuple[Callable[[Path], None], str]] = [
    (_flip_a_byte, "the file is corrupt or was modified"),
    (_path_in_manifest, "invalid manifest: artifact.file: Value error, must be a plain file name"),
    (_model_symlinked_outside, "the model file resolves to "),
    (_folder_symlinked_outside, "the version folder resolves to "),
]


@pytest.fixture
def attacked_root(models_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's models plus iris version 3 (a copy of version 2) to attack."""
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    shutil.copytree(root / "iris" / "2", root / "iris" / "3")
    manifest = json.loads((root / "iris" / "3" / "model.json").read_text())
    manifest["version"] = 3
    (root / "iris" / "3" / "model.json").write_text(json.dumps(manifest))
    (tmp_path / "outside").mkdir()
    return root


@pytest.mark.parametrize(("attack", "reason"), ATTACKS, ids=[a.__name__ for a, _ in ATTACKS])
def test_a_refused_artifact_fails_its_version_and_the_others_serve(
    attacked_root: Path, attack: Callable[[Path], None], reason: str
) -> None:
    attack(attacked_root / "iris" / "3")
    app = create_app(Settings(models_dir=attacked_root, inference_threads=1))
    with TestClient(app) as client:
        iris = client.get("/models/iris").json()
        states = {v["version"]: (v["state"], v["error"]) for v in iris["versions"]}
        assert states[1] == ("ready", None)
        assert states[2] == ("ready", None)
        assert states[3][0] == "failed"
        assert reason in states[3][1]
        assert str(attacked_root / "iris" / "3") in states[3][1]

        infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}]}
        refused = client.post("/v2/models/iris/versions/3/infer", json=infer)
        assert refused.status_code == 503
        assert refused.json()["code"] == "model_not_ready"
        assert reason in refused.json()["error"]
        answer = client.post("/models/iris/versions/2/predict", json=IRIS_ROW)
        assert answer.status_code == 200
        assert answer.json()["predictions"][0]["prediction"] == "setosa"
        assert client.get("/v2/models/diabetes/ready").status_code == 200
        assert client.get("/v2/health/ready").status_code == 400  # not every version loaded
        failures = [
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("tabserve_model_load_failures_total{")
        ]
        assert failures == ['tabserve_model_load_failures_total{model="iris"} 1.0']
