"""The Makefile: `make serve` installs only what serving needs and honours the port settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import free_port, kill_group

REPO = Path(__file__).resolve().parents[2]


def _dry_run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_serve_installs_the_package_alone_and_the_tests_add_the_dev_tools(tmp_path: Path) -> None:
    fresh = f"VENV={tmp_path / 'venv'}"  # no stamps there: every install step shows
    serve = _dry_run("serve", fresh, f"MODELS={tmp_path}")
    assert "pip install --quiet -e .\n" in serve
    assert ".[dev]" not in serve
    assert "pip install --quiet -e '.[dev]'" in _dry_run("pytest", fresh)


def test_serve_passes_a_port_only_when_asked(tmp_path: Path) -> None:
    models = f"MODELS={tmp_path}"
    assert _dry_run("serve", models, "PORT=8021").rstrip().endswith("--port 8021")
    plain = _dry_run("serve", models, env={"TABSERVE_PORT": "8021"}).rstrip()
    assert "--port" not in plain.splitlines()[-1]  # the server reads TABSERVE_PORT itself


@pytest.mark.slow
def test_tabserve_port_reaches_the_server_make_serve_starts(models_dir: Path) -> None:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "tabserve").is_file():
        pytest.skip("the tests do not run from a virtualenv with tabserve installed")
    port = free_port()
    stamp = venv / ".installed-serve"
    process = subprocess.Popen(
        # -o: take this virtualenv as installed, whatever its stamp says
        ["make", "--no-print-directory", "-o", str(stamp), "serve"],
        cwd=REPO,
        env={
            **os.environ,
            "VENV": str(venv),
            "MODELS": str(models_dir),
            "TABSERVE_PORT": str(port),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            assert ready.json() == {"ready": True, "reasons": []}
            break
        assert process.poll() is None, "make serve exited instead of serving"
    finally:
        kill_group(process)
