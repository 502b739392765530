"""The real thing: `tabserve serve` in its own process, spoken to over TCP."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

IRIS = {
    "sepal_length_cm": 6.7,
    "sepal_width_cm": 3.0,
    "petal_length_cm": 5.2,
    "petal_width_cm": 2.3,
}


def test_serves_every_api_then_exits_cleanly_on_sigterm(
    launch: Callable[..., object], models_dir: Path
) -> None:
    server = launch(models_dir)
    url = server.url  # type: ignore[attr-defined]
    records = httpx.post(f"{url}/models/iris/predict", json=IRIS).json()
    assert records["predictions"][0]["prediction"] == "virginica"
    v1 = httpx.post(f"{url}/v1/models/iris:predict", json={"instances": [list(IRIS.values())]})
    assert v1.json() == {"predictions": ["virginica"]}
    v2 = httpx.post(
        f"{url}/v2/models/iris/infer",
        json={
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": list(IRIS.values())}
            ]
        },
    )
    assert v2.status_code == 200
    assert v2.json()["outputs"][0]["data"] == ["virginica"]
    process = server.process  # type: ignore[attr-defined]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def run_predict(*args: str) -> subprocess.CompletedProcess[str]:
    """`tabserve predict ARGS` in a subprocess."""
    command = [sys.executable, "-m", "tabserve.service", "predict", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_predict_command_sends_a_csv_and_prints_answers(server: Any, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(
        ",".join(IRIS) + "\n" + ",".join(map(str, IRIS.values())) + "\n5.1,3.5,1.4,0.2\n"
    )
    result = run_predict(str(rows), "--model", "iris", "--version", "1", "--url", server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert '"prediction": "virginica"' in lines[0]
    assert '"prediction": "setosa"' in lines[1]
    assert "model iris version 1" in result.stderr


def test_predict_command_reports_the_services_refusal(server: Any, tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text('[{"sepal_length_cm": "tall"}]')
    result = run_predict(str(rows), "--model", "iris", "--url", server.url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: 400 from /models/iris/predict: ")
    # the names are checked before the values, as on V1 and V2
    assert "feature 'sepal_width_cm' (index 1), row 0: expected a value" in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_answers_do_not_name_the_server_software(
    launch: Callable[..., Any], models_dir: Path, workers: str
) -> None:
    """No `server: uvicorn` header (one header less to write, nothing disclosed)."""
    server = launch(models_dir, "--workers", workers)
    response = httpx.get(f"{server.url}/v2/health/live")
    assert response.status_code == 200
    assert "server" not in response.headers
    assert "date" in response.headers
