"""docs/rollouts.md's commands, run against a real `tabserve serve` with two iris versions.

The docs example test (`test_docs_examples.py`) serves one version and no admin
token, so it skips that page's blocks; here each block runs against a server that
has both, from the same starting point: a split rollout of version 1 against the
default version 2 (so promoting and deleting each find one). Every `curl` in them
must get a 2xx.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.support import REPO, free_port, stop, wait_for
from tests.deploy.test_docs_examples import CURL_STATUS, SHELL, blocks

TOKEN = "docs-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAGE = REPO / "docs" / "rollouts.md"


@pytest.fixture(scope="module")
def url(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("rollout-docs")
    shutil.copytree(models_dir / "iris", root / "models" / "iris")
    port = free_port()
    log = root / "server.log"
    env = {"TABSERVE_ADMIN_TOKEN": TOKEN, "TABSERVE_GRPC_PORT": "0", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [
            Path(sys.prefix) / "bin" / "tabserve",
            "serve",
            "--models-dir",
            "models",
            "--port",
            str(port),
        ],
        cwd=root,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/v2/health/ready", process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def _start_over(url: str) -> None:
    """No rollout, no pin (version 2 answers), then a split of version 1 at 0.1."""
    httpx.delete(f"{url}/models/iris/rollout", headers=AUTH)
    pin = httpx.put(
        f"{url}/v2/repository/models/iris/default", headers=AUTH, json={"version": None}
    )
    assert pin.status_code == 200, pin.text
    body = {"challenger": 1, "mode": "split", "share": 0.1}
    started = httpx.put(f"{url}/models/iris/rollout", headers=AUTH, json=body)
    assert started.status_code == 200, started.text


@pytest.mark.slow
def test_every_command_of_the_rollouts_page_works(url: str) -> None:
    found = blocks(PAGE, *SHELL)
    assert len(found) >= 6
    for block in found:
        _start_over(url)
        code = block.code.replace("localhost:8000", url.removeprefix("http://"))
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", CURL_STATUS + code],
            env={"TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        report = f"{block.name}:\n{code}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert done.returncode == 0, report
        statuses = [int(s) for s in re.findall(r"^curl-status (\d+)$", done.stderr, re.MULTILINE)]
        assert statuses, report
        assert all(200 <= s < 300 for s in statuses), report
