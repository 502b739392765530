"""The whole loop with real processes, as the README shows it:
train -> serve -> predict -> feedback -> train --from-log -> the new version serves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tabserve.training.datasets import load_bundled


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tabserve.service", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, **(env or {})},
    )


def wait_for_version(url: str, version: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/v2/models/iris/versions/{version}/ready").status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"version {version} never became ready")


def test_served_predictions_with_feedback_train_the_next_version(
    tmp_path: Path, launch: Callable[..., object]
) -> None:
    models, data = tmp_path / "models", tmp_path / "data"
    trained = run(
        "train",
        "--dataset",
        "iris",
        "--model",
        "random_forest",
        "--models-dir",
        str(models),
        "--param",
        "n_estimators=7",
        "--quiet",
    )
    assert trained.returncode == 0, trained.stderr
    env = {"TABSERVE_DATA_DIR": str(data), "TABSERVE_PREDLOG_MODE": "all"}
    server = launch(models, "--workers", "2", env={**env, "TABSERVE_POLL_SECONDS": "0.3"})
    url: str = server.url  # type: ignore[attr-defined]

    iris = load_bundled("iris")
    names = [c.name for c in iris.columns]
    truths = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(0, 150, 2):
            row = dict(zip(names, iris.features[i].tolist(), strict=True))
            answer = client.post(
                "/models/iris/predict", json=row, headers={"x-request-id": f"q{i}"}
            )
            assert answer.status_code == 200, answer.text
            truths[f"q{i}"] = str(iris.target[i])
        items = [{"request_id": rid, "truth": truth} for rid, truth in truths.items()]
        deadline = time.monotonic() + 30
        accepted: set[str] = set()
        while len(accepted) < len(items) and time.monotonic() < deadline:
            pending = [item for item in items if item["request_id"] not in accepted]
            outcome = client.post("/models/iris/feedback", json=pending)
            assert outcome.status_code == 200, outcome.text
            accepted |= {
                r["request_id"] for r in outcome.json()["results"] if r["outcome"] == "accepted"
            }
            time.sleep(0.2)
        assert len(accepted) == 75
        quality = client.get("/models/iris/quality").json()
        assert quality["versions"][0]["rows"] == 75
        assert quality["versions"][0]["accuracy"] > 0.9

    retrained = run("train", "--from-log", "iris", "--models-dir", str(models), "--quiet", env=env)
    assert retrained.returncode == 0, retrained.stderr
    assert "model iris version 2 (RandomForestClassifier)" in retrained.stdout
    manifest = json.loads((models / "iris" / "2" / "model.json").read_text())
    assert manifest["training"]["source"] == "log:iris"
    assert manifest["training"]["log"]["rows"] == 75
    assert manifest["training"]["log"]["versions"] == [1]
    assert manifest["estimator"]["params"]["n_estimators"] == 7  # the served version's

    wait_for_version(url, 2)
    row = dict(zip(names, iris.features[1].tolist(), strict=True))
    answer = httpx.post(f"{url}/models/iris/predict", json=row).json()
    assert answer["version"] == 2
    assert answer["predictions"][0]["prediction"] == "setosa"
