"""Service fixtures in a chain: models -> settings -> app -> client (lifespan always runs)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy.typing as npt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tabserve.artifact.manifest import Manifest
from tabserve.service.app import create_app
from tabserve.service.core.inference import InferencePool
from tabserve.service.core.runtime import Prediction, Runtime
from tabserve.service.settings import Settings
from tests.service.support import serve_with


@pytest.fixture
def settings(models_dir: Path) -> Settings:
    """Settings pointing at the session's trained models."""
    return Settings(models_dir=models_dir, inference_threads=2, max_rows=100)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """A fresh app (own registry and metrics) per test."""
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client whose `with` block runs the real lifespan: models load before requests."""
    with TestClient(app) as test_client:
        yield test_client


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A `tabserve serve` process on loopback."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def start_server(models_dir: Path, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Start `python -m tabserve.service serve` and wait until it reports ready."""
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="tabserve-server-", suffix=".log")[1])
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tabserve.service",
            "serve",
            "--models-dir",
            str(models_dir),
            "--port",
            str(port),
            *extra,
        ],
        # a file, not a pipe: nobody reads a pipe while the server logs, and a full
        # pipe would block the server mid-request
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        # its own process group, so cleanup reaches gunicorn's workers too
        start_new_session=True,
    )
    log.close()  # the child has its own copy
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return ServerProcess(process, url, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    kill_group(process)
    raise RuntimeError("server did not become ready within 60 s")


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a server and every worker it forked (they share its process group)."""
    with contextlib.suppress(ProcessLookupError):  # the group is gone: all have exited
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def server(models_dir: Path) -> Iterator[ServerProcess]:
    """One real server process for a test module."""
    running = start_server(models_dir)
    yield running
    running.stop()


@pytest.fixture
def launch() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with custom arguments; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def _launch(models_dir: Path, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
        running = start_server(models_dir, *extra, env=env)
        started.append(running)
        return running

    yield _launch
    for running in started:
        kill_group(running.process)


class HeldRuntime:
    """Wraps a served model's runtime; `predict` waits until the test releases it."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.entered = threading.Event()
        self.release = threading.Event()

    def load(self) -> Manifest:
        return self.inner.load()

    def predict(self, features: npt.NDArray[Any]) -> Prediction:
        self.entered.set()
        self.release.wait(timeout=30)
        return self.inner.predict(features)

    def unload(self) -> None:
        self.inner.unload()


@pytest.fixture
def fast_and_general(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps on the same models: fast paths on, and off (everything through FastAPI)."""
    express = create_app(settings)
    general = create_app(settings.model_copy(update={"fast_path": False}))
    with TestClient(express) as fast, TestClient(general) as slow:
        yield fast, slow


@pytest.fixture
def hold(client: TestClient) -> Iterator[Callable[[str], HeldRuntime]]:
    """`hold("iris")` makes the default iris version's predictions wait for `.release`."""
    held: list[HeldRuntime] = []

    def _hold(name: str) -> HeldRuntime:
        runtime = serve_with(client.app.state.tabserve, name, HeldRuntime)  # type: ignore[attr-defined]
        held.append(runtime)
        return runtime

    yield _hold
    for runtime in held:
        runtime.release.set()


@pytest.fixture
async def pool() -> AsyncIterator[InferencePool]:
    """A started inference pool of two threads, closed after the test (async tests)."""
    running = InferencePool(2)
    running.start()
    yield running
    running.close()
