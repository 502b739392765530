"""Helpers shared by the deployment tests: paths, processes and the requests they send."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IRIS_ROW = [6.7, 3.0, 5.2, 2.3]
OUT_OF_RANGE_ROW = [50.0, 3.0, 5.2, 2.3]  # sepal length far above the training maximum (7.9)
WORKERS = 2


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    """Poll `url` until it answers 200; fail with the process's log if it dies first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            raise RuntimeError(f"{process.args} exited {process.returncode}:\n{output}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {seconds} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def exercise(client: httpx.Client | TestClient) -> None:
    """One request of each kind that makes a series appear: served, refused, out of range."""
    predict = "/v1/models/iris:predict"
    assert client.post(predict, json={"instances": [IRIS_ROW]}).status_code == 200
    assert client.post(predict, json={"instances": [OUT_OF_RANGE_ROW]}).status_code == 200
    assert client.post(predict, json={"instances": [[1.0, "x", 2.0, 3.0]]}).status_code == 400
    assert client.post("/v1/models/broken:predict", json={"instances": [IRIS_ROW]}).status_code == (
        503
    )


def wait_until_every_worker_loaded(url: str, seconds: float = 60) -> None:
    """Each worker loads the models itself and counts `broken` once: wait for all of them."""
    expected = f'tabserve_model_load_failures_total{{model="broken"}} {float(WORKERS)}'
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if expected in httpx.get(f"{url}/metrics", timeout=2).text.splitlines():
            return
        time.sleep(0.1)
    raise RuntimeError(f"not every worker loaded its models within {seconds} s")


@dataclass
class Served:
    """A running `tabserve serve` process on loopback."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path
