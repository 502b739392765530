"""What a real server writes to stderr: every line JSON in JSON mode, with one process
and with gunicorn's workers, and no error lines for things that are not errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import ServerProcess

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", ["1", "2"])
def test_json_mode_writes_only_json_lines(
    launch: Callable[..., ServerProcess], models_dir: Path, workers: str
) -> None:
    # A HOME nobody can create, as in the image (read-only root, no home directory).
    env = {"HOME": "/proc/no-home", "TABSERVE_LOG_FORMAT": "json"}
    server = launch(models_dir, "--workers", workers, env=env)
    answer = httpx.post(
        f"{server.url}/v1/models/iris:predict", json={"instances": [[6.7, 3.0, 5.2, 2.3]]}
    )
    assert answer.status_code == 200
    assert server.stop() == 0
    lines = server.log.read_text().splitlines()
    assert [line for line in lines if not _is_json_object(line)] == []
    entries = [json.loads(line) for line in lines]
    assert "\x1b[" not in server.log.read_text()
    loggers = {entry["logger"] for entry in entries}
    assert {"tabserve.models", "tabserve.access"} <= loggers
    server_logger = "uvicorn.error" if workers == "1" else "gunicorn.error"
    assert server_logger in loggers, loggers
    assert not [e for e in entries if e["level"] in ("error", "critical")], entries


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
