"""gRPC with `tabserve serve --workers 2`: every worker listens on the port and answers.

One real process tree, kept lean: gunicorn's master builds the app before forking,
each worker starts its own gRPC server in its lifespan, binding the same port with
SO_REUSEPORT, and SIGTERM stops them all cleanly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from tests.service.conftest import ServerProcess, free_port

pytestmark = pytest.mark.slow


def _listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on `port`, from the kernel's tables (any process)."""
    count = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "0A":
                count += 1
    return count


def test_two_workers_both_serve_grpc(
    launch: Callable[..., ServerProcess], models_dir: Path
) -> None:
    port = free_port()
    server = launch(models_dir, "--workers", "2", env={"TABSERVE_GRPC_PORT": str(port)})
    # One per worker, sharing the port; HTTP was ready as soon as one worker was.
    for _ in range(600):
        if _listening_sockets(port) >= 2:
            break
        time.sleep(0.05)
    assert _listening_sockets(port) == 2, server.log.read_text()
    rows = np.array([[5.1, 3.5, 1.4, 0.2]])
    for _ in range(8):  # a client (so a connection) each: the kernel spreads them
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = triton.InferInput("x", [1, 4], "FP64")
        tensor.set_data_from_numpy(rows)
        assert client.infer("iris", [tensor]).as_numpy("predict").shape == (1,)
        client.close()
    metrics = httpx.get(server.url + "/metrics").text
    assert 'tabserve_grpc_requests_total{route="ModelInfer",status="OK"} 8.0' in metrics
    assert server.stop() == 0
    assert _listening_sockets(port) == 0
