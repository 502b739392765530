"""Ports: a taken one fails before any model loads; `tabserve predict` follows TABSERVE_PORT."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import ServerProcess


def _tabserve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tabserve.service", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_taken_port_fails_before_loading_models_and_says_what_to_do(models_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _tabserve("serve", "--models-dir", str(models_dir), env={"TABSERVE_PORT": str(port)})
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert f"TABSERVE_PORT={port + 1} make serve" in line
    assert f"make serve PORT={port + 1}" in line
    assert "version 1" not in done.stderr + done.stdout  # no model was loaded


def test_predict_sends_to_tabserve_port_by_default(server: ServerProcess, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm\n5.1,3.5,1.4,0.2\n"
    )
    port = server.url.rsplit(":", 1)[1]
    done = _tabserve("predict", str(rows), "--model", "iris", env={"TABSERVE_PORT": port})
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("model iris version 2")
    assert isinstance(json.loads(done.stdout), dict)


def test_predict_help_shows_the_default_url() -> None:
    done = _tabserve("predict", "--help", env={"TABSERVE_PORT": "8021"})
    assert "default: http://127.0.0.1:8021" in done.stdout
