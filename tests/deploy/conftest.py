"""Deployment fixtures: the session's models plus a broken one, what the service really
exports, and one real `tabserve serve --workers 2` process shared by the end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tabserve.service.app import create_app
from tabserve.service.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb
from tabserve.service.settings import Settings
from tests.deploy.support import (
    REPO,
    WORKERS,
    Served,
    exercise,
    free_port,
    stop,
    wait_for,
    wait_until_every_worker_loaded,
)


@pytest.fixture(scope="session")
def deploy_models(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's models plus `broken/1`, an iris artifact in the wrong folder.

    Its manifest names another model, so it fails to load: a real load failure for the
    alert and the dashboard to see, while iris, diabetes and churn serve.
    """
    root = tmp_path_factory.mktemp("deploy") / "models"
    shutil.copytree(models_dir, root)
    shutil.copytree(models_dir / "iris" / "1", root / "broken" / "1")
    return root


@pytest.fixture(scope="session")
def exported_names(deploy_models: Path, tmp_path_factory: pytest.TempPathFactory) -> frozenset[str]:
    """Every sample name a real app exports after a few requests (`..._total`, `..._bucket`).

    The prediction log is on, so its series and the live-quality ones exist too, and
    gRPC answers one call, so its series do.
    """
    data = tmp_path_factory.mktemp("predlog")
    port = free_port()
    settings = Settings(models_dir=deploy_models, predlog_mode="all", data_dir=data, grpc_port=port)
    with (
        TestClient(create_app(settings)) as client,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        exercise(client)
        client.get("/v2/health/ready")
        GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=30)
        text = client.get("/metrics").text
    return frozenset(
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    )


@pytest.fixture(scope="session")
def served(deploy_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`python -m tabserve.service serve --workers 2` from the repository root, like the image."""
    port, grpc_port = free_port(), free_port()
    workdir = tmp_path_factory.mktemp("served")
    log = workdir / "server.log"
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        # the prediction log on, so the dashboard's log and quality panels have series
        "TABSERVE_PREDLOG_MODE": "all",
        "TABSERVE_DATA_DIR": str(workdir / "data"),
        # gRPC on, so the dashboard's gRPC panels have series (both workers share the port)
        "TABSERVE_GRPC_PORT": str(grpc_port),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tabserve.service",
            "serve",
            "--workers",
            str(WORKERS),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--models-dir",
            str(deploy_models),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/v2/health/live", process, log)
        wait_until_every_worker_loaded(url)
        yield Served(process, url, port, log, grpc_port)
    finally:
        stop(process)
