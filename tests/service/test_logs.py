"""One access-log line per request, plain or JSON; probes silent unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.settings import Settings


def access_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "tabserve.access" in line]


def test_json_lines_carry_route_status_latency_model_and_request_id(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(models_dir=models_dir, log_format="json")
    with TestClient(create_app(settings)) as client:
        capsys.readouterr()
        client.post(
            "/v1/models/iris:predict",
            json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
            headers={"X-Request-ID": "req-42"},
        )
        client.get("/v2/health/live")
        client.get("/metrics")
    [line] = access_lines(capsys)
    entry = json.loads(line)
    assert entry["logger"] == "tabserve.access"
    assert (entry["method"], entry["route"], entry["status"]) == (
        "POST",
        "/v1/models/{model}:predict",
        200,
    )
    assert (entry["model"], entry["request_id"]) == ("iris", "req-42")
    assert entry["latency_ms"] > 0


def test_plain_lines_and_probes_when_asked(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(models_dir=models_dir, log_probes=True)
    with TestClient(create_app(settings)) as client:
        capsys.readouterr()
        client.get("/v2/health/live")
        client.post("/v2/models/iris/infer", json={"inputs": []}, headers={"X-Request-ID": "r-9"})
    lines = access_lines(capsys)
    assert len(lines) == 2
    assert "GET /v2/health/live /v2/health/live 200" in lines[0]
    assert "POST /v2/models/iris/infer /v2/models/{model}/infer 400" in lines[1]
    assert lines[1].endswith("model=iris id=r-9")
