"""The image built from the repository's Dockerfile with podman and run as the Deployment
runs it: unprivileged, read-only with an in-memory /tmp, two workers.

Built once per run and shared by this module's tests. Cold (no base image, no wheels,
no layers) the build takes many minutes; warm, podman's layer cache and the kept base
and wheels leave a couple of minutes (figures in docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tests.deploy.image import (
    BASE_GLIBC,
    BASE_PYTHON,
    BUILDER,
    IMAGE,
    Container,
    Image,
    base_platform,
    build,
    image_id,
    podman,
    podman_env,
    remove,
    skip_reason,
    start,
)
from tests.deploy.support import IRIS_ROW, REPO, free_port

pytestmark = [
    pytest.mark.image,
    pytest.mark.slow,
    # The first test waits for the build: minutes when nothing is cached yet.
    pytest.mark.timeout(1800),
]
SETOSA_ROW = [5.1, 3.5, 1.4, 0.2]
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
REQUESTS = 60
SHUTTING_DOWN = "server is shutting down; reconnect"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image")


@pytest.fixture(scope="module")
def image(workdir: Path) -> Image:
    """The image, built with the README's commands; its size and layers go to the report."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    built = build(workdir / "build.log", sys.executable)
    report = REPO / "build" / "image-report.txt"
    short = built.id.removeprefix("sha256:")[:12]
    report.write_text(f"{IMAGE} {short}: {built.size} bytes\n\n{built.history}")
    return built


@pytest.fixture(scope="module")
def container(image: Image, workdir: Path) -> Iterator[Container]:
    """The image with its baked iris model, started as the README says."""
    running = start(image, f"tabserve-test-{os.getpid()}", free_port(), workdir / "baked.log")
    yield running
    remove(running)


def test_the_server_runs_unprivileged_on_a_read_only_root(container: Container) -> None:
    assert container.exec("id", "-u").stdout.split() == ["10001"]
    # only the in-memory /tmp is writable: the multiprocess metrics live there
    assert container.exec("touch", "/tmp/probe").returncode == 0
    for path in ["/opt/venv/probe", "/models/probe", "/var/tmp/probe", "/probe"]:
        refused = container.exec("touch", path, user="0")  # root: refused for the mount alone
        assert "Read-only file system" in refused.stderr, path
    assert container.exec("ls", "/tmp/metrics").stdout.split()  # the workers' metric files
    mounts = json.loads(podman("inspect", "--format", "{{json .Mounts}}", container.name))
    assert mounts == []  # no volume: /tmp is the tmpfs alone


def test_v2_and_named_feature_predictions_are_correct(container: Container) -> None:
    rows = [IRIS_ROW, SETOSA_ROW]
    tensor = {
        "name": "x",
        "shape": [2, 4],
        "datatype": "FP64",
        "data": [x for row in rows for x in row],
    }
    v2 = httpx.post(f"{container.url}/v2/models/iris/infer", json={"inputs": [tensor]})
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert outputs["predict"]["data"] == ["virginica", "setosa"]
    records = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    named = httpx.post(f"{container.url}/models/iris/predict", json=records)
    assert named.status_code == 200, named.text
    assert [p["prediction"] for p in named.json()["predictions"]] == ["virginica", "setosa"]
    assert (named.json()["model"], named.json()["version"]) == ("iris", 1)


def requests_total(url: str) -> float:
    """The V1 predict requests answered 200, over one scrape."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tabserve_http_requests_total"
        and sample.labels["route"] == "/v1/models/{model}:predict"
        and sample.labels["status"] == "200"
    )


def test_metrics_sum_both_workers(container: Container) -> None:
    before = requests_total(container.url)
    limits = httpx.Limits(max_keepalive_connections=0)  # fresh connections reach both workers
    with httpx.Client(base_url=container.url, limits=limits, timeout=30) as client:

        def one(_: int) -> int:
            body = {"instances": [IRIS_ROW]}
            return client.post("/v1/models/iris:predict", json=body).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(one, range(REQUESTS))) == {200}
    # each scrape is answered by one worker and must count the other's requests too
    assert [requests_total(container.url) - before for _ in range(6)] == [REQUESTS] * 6
    answered = container.exec("python", "-c", WORKER_COUNTS, user="10001:10001").stdout.split()
    assert len(answered) == 2, answered  # two workers' files, each with requests counted
    assert all(float(n) > 0 for n in answered)


# Per-process counter files in the multiprocess folder: how many predict requests each
# worker answered (the supervisor's own file counts none).
WORKER_COUNTS = """
import glob
from prometheus_client.multiprocess import MultiProcessCollector
for path in sorted(glob.glob('/tmp/metrics/counter_*.db')):
    n = sum(s.value for f in MultiProcessCollector.merge([path]) for s in f.samples
            if s.name == 'tabserve_http_requests_total'
            and s.labels['route'] == '/v1/models/{model}:predict')
    if n:
        print(n)
"""


def test_the_image_healthcheck_reports_healthy(container: Container) -> None:
    podman("healthcheck", "run", container.name)
    status = podman("inspect", "--format", "{{.State.Health.Status}}", container.name)
    assert status.strip() == "healthy"


# Run in the final image as root: what a small runtime stage must not hold.
FINAL_STAGE_CHECK = """
import glob, importlib.util, json, os, shutil
tools = ("gcc", "cc", "c++", "g++", "clang", "make", "pip-compile")
modules = ("pytest", "mypy", "ruff", "hypothesis", "schemathesis", "tritonclient")
places = ("/root/.cache/*", "/home/*/.cache/*", "/tmp/*", "/wheels", "/src",
          "/var/cache/apt/archives/*.deb", "/var/lib/apt/lists/*_Packages*")
print(json.dumps({
    "compilers": [t for t in tools if shutil.which(t)],
    "test tools": [m for m in modules if importlib.util.find_spec(m)],
    "caches and sources": [f for p in places for f in glob.glob(p)],
}))
"""


def test_the_final_stage_has_no_compilers_test_tools_or_caches(image: Image) -> None:
    found = podman(
        *["run", "--rm", "--user", "0", "--entrypoint", "python", image.id],
        *["-c", FINAL_STAGE_CHECK],
    )
    assert json.loads(found) == {"compilers": [], "test tools": [], "caches and sources": []}
    # the server is there: the check is not passing on an empty image
    assert podman("run", "--rm", image.id, "--help").startswith("usage: tabserve")


def test_the_base_has_the_python_and_glibc_the_wheels_were_chosen_for(image: Image) -> None:
    assert base_platform() == (BASE_PYTHON, BASE_GLIBC)


@pytest.fixture
def mounted_models(models_dir: Path, tmp_path: Path) -> Path:
    """The session's diabetes model in a folder the image's user can read (pytest's own
    temporary folders are private to root)."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / "diabetes", root / "diabetes")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def test_a_model_mounted_read_only_at_models_is_served(
    image: Image, mounted_models: Path, tmp_path: Path
) -> None:
    mount = ["-v", f"{mounted_models}:/models:ro"]
    running = start(image, f"tabserve-mounted-{os.getpid()}", free_port(), tmp_path / "log", *mount)
    try:
        catalog = httpx.get(f"{running.url}/models", timeout=10).json()
        rows = [[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]]
        body = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP64", "data": rows[0]}]}
        served = httpx.post(f"{running.url}/v2/models/diabetes/infer", json=body, timeout=10)
        refused = running.exec("touch", "/models/diabetes/probe")
    finally:
        remove(running)
    assert [m["name"] for m in catalog] == ["diabetes"]  # the baked iris is hidden
    assert served.status_code == 200, served.text
    with TestClient(create_app(Settings(models_dir=mounted_models))) as local:
        expected = local.post("/v2/models/diabetes/infer", json=body).json()
    assert served.json()["outputs"] == expected["outputs"]
    assert "Read-only file system" in refused.stderr


def receive_until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], ConnectionClosed]:
    replies = []
    while True:
        try:
            replies.append(json.loads(ws.recv(timeout=60)))
        except ConnectionClosed as closed:
            return replies, closed


def test_podman_stop_drains_the_server_and_it_exits_0(image: Image, tmp_path: Path) -> None:
    log = tmp_path / "log"
    running = start(image, f"tabserve-stopped-{os.getpid()}", free_port(), log)
    record = dict(zip(FEATURES, IRIS_ROW, strict=True))
    stopped: list[int] = []
    try:
        with connect(f"ws://127.0.0.1:{running.url.rsplit(':', 1)[1]}/models/iris/stream") as ws:
            for index in range(400):
                ws.send(json.dumps({"request_id": f"s{index}", "records": [record] * 20}))
            first = json.loads(ws.recv(timeout=60))
            stopper = threading.Thread(target=lambda: stopped.append(running.stop()))
            stopper.start()
            replies, closed = receive_until_closed(ws)
        stopper.join(timeout=120)
    finally:
        remove(running)
    replies.insert(0, first)
    # what was read before SIGTERM is answered in order, then the app closes the stream
    assert [r["request_id"] for r in replies] == [f"s{i}" for i in range(len(replies))]
    assert all(r["predictions"][0]["prediction"] == "virginica" for r in replies)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1012, SHUTTING_DOWN)
    assert stopped == [0]  # SIGTERM reached the server as PID 1; no SIGKILL (137)
    assert log.read_text().count("Application shutdown complete") == 2


def test_a_rebuild_leaves_no_superseded_image_behind(image: Image) -> None:
    # A changed tree moves both tags; what they named before must be gone (about 5 GB
    # a build, which filled a shared machine's disk). Nothing moved: nothing to remove.
    for old in image.superseded:
        exists = subprocess.run(["podman", "image", "exists", old], env=podman_env())
        assert exists.returncode == 1, f"superseded image {old[:12]} is still stored"
    assert image_id(IMAGE) == image.id.removeprefix("sha256:")
    assert image_id(BUILDER) is not None
