"""Model repository API and the directory poller: swaps with zero failed requests."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.fixture
def own_models(models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session's models, free to add versions to."""
    return Path(shutil.copytree(models_dir, tmp_path / "models"))


def add_iris_version(root: Path) -> int:
    """Train the next iris version (a small forest) into `root`; return its number."""
    result = train(
        TrainRequest(
            load_bundled("iris"), "random_forest", root, "iris", params={"n_estimators": 5}
        )
    )
    return result.manifest.version


@pytest.fixture
def admin(own_models: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=own_models, admin_token=TOKEN))) as client:
        yield client


def test_admin_routes_are_closed_to_everyone_without_a_token(client: TestClient) -> None:
    refused = client.post("/v2/repository/index", headers=AUTH)
    assert refused.status_code == 409
    assert refused.json()["code"] == "feature_disabled"
    assert "/v2/repository/index" in client.get("/openapi.json").json()["paths"]


def test_missing_and_wrong_tokens(admin: TestClient) -> None:
    missing = admin.post("/v2/repository/index")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = admin.post("/v2/repository/index", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "wrong admin token"


def test_index_load_default_and_unload(admin: TestClient, own_models: Path) -> None:
    version = add_iris_version(own_models)
    index = {
        (i["name"], i["version"]): i
        for i in admin.post("/v2/repository/index", headers=AUTH).json()
    }
    assert index[("iris", str(version))]["state"] == "unloaded"
    assert index[("iris", "2")]["default"] is True

    loaded = admin.post("/v2/repository/models/iris/load", headers=AUTH, json={"version": version})
    assert loaded.json() == [
        {"name": "iris", "version": str(version), "state": "ready", "reason": None}
    ]
    assert admin.get("/v2/models/iris").json()["parameters"]["version"] == str(version)
    # the new version has its own named-feature route and is the default one's schema
    record = dict(
        zip(
            ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"],
            ROW["instances"][0],
            strict=True,
        )
    )
    assert admin.post("/models/iris/predict", json=record).json()["version"] == version
    assert admin.post(f"/models/iris/versions/{version}/predict", json=record).status_code == 200

    pinned = admin.put("/v2/repository/models/iris/default", headers=AUTH, json={"version": 1})
    assert pinned.json()["version"] == "1"
    assert admin.post("/models/iris/predict", json=record).json()["version"] == 1
    assert admin.get("/models").json()[2]["default_version"] == 1

    unloaded = admin.post("/v2/repository/models/iris/unload", headers=AUTH, json={"version": 1})
    assert unloaded.json()["state"] == "unloaded"
    # the pin went with it: the highest version answers again
    assert admin.post("/models/iris/predict", json=record).json()["version"] == version
    assert admin.post("/v1/models/iris:predict", json=ROW).status_code == 200
    assert admin.post("/models/iris/versions/1/predict", json=record).status_code == 404


def test_loading_a_version_that_is_not_on_disk_is_404(admin: TestClient) -> None:
    response = admin.post("/v2/repository/models/iris/load", headers=AUTH, json={"version": 9})
    assert response.status_code == 404
    assert "versions on disk: 1, 2" in response.json()["error"]


def test_a_broken_new_version_never_replaces_the_serving_one(
    admin: TestClient, own_models: Path
) -> None:
    version = add_iris_version(own_models)
    model_file = own_models / "iris" / str(version) / "model.joblib"
    model_file.write_bytes(model_file.read_bytes()[:-10] + b"0123456789")
    response = admin.post(
        "/v2/repository/models/iris/load", headers=AUTH, json={"version": version}
    )
    [attempt] = response.json()
    assert attempt["state"] == "failed"
    assert "sha256" in attempt["reason"]
    # the failed version is visible but the default stays the one that serves
    assert admin.post("/v1/models/iris:predict", json=ROW).status_code == 200
    assert admin.get("/v2/models/iris").json()["parameters"]["version"] == "2"


def test_setting_a_failed_version_as_default_is_refused(
    admin: TestClient, own_models: Path
) -> None:
    version = add_iris_version(own_models)
    (own_models / "iris" / str(version) / "model.joblib").write_bytes(b"junk")
    admin.post("/v2/repository/models/iris/load", headers=AUTH, json={"version": version})
    refused = admin.put(
        "/v2/repository/models/iris/default", headers=AUTH, json={"version": version}
    )
    assert refused.status_code == 400
    assert admin.post("/v1/models/iris:predict", json=ROW).status_code == 200


async def steady_traffic(url: str, stop: asyncio.Event) -> list[tuple[float, int, str]]:
    """Requests back to back from 8 clients until `stop`: (sent at, status, version)."""
    seen: list[tuple[float, int, str]] = []
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
    }
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> None:
            while not stop.is_set():
                sent = time.monotonic()
                response = await client.post(f"{url}/v2/models/iris/infer", json=body)
                seen.append((sent, response.status_code, response.json().get("model_version", "")))

        await asyncio.gather(*(one() for _ in range(8)))
    return seen


def swap_under_load(
    url: str, swap: Callable[[], Any]
) -> tuple[list[tuple[float, int, str]], float]:
    """Run `swap` while traffic flows; returns what was seen and when the swap ended."""

    async def scenario() -> tuple[list[tuple[float, int, str]], float]:
        stop = asyncio.Event()
        traffic = asyncio.ensure_future(steady_traffic(url, stop))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(swap)
        swapped = time.monotonic()
        await asyncio.sleep(0.5)
        stop.set()
        return await traffic, swapped

    return asyncio.run(scenario())


def assert_switched(seen: list[tuple[float, int, str]], swapped: float, old: str, new: str) -> None:
    """No failure; old answers first; every request sent after the swap got the new version.

    (A request sent before the swap may still finish on the old version after a newer
    request finished on the new one: requests running on a version finish on it.)
    """
    assert {status for _, status, _ in seen} == {200}
    ordered = sorted(seen)
    assert ordered[0][2] == old
    after = {version for sent, _, version in ordered if sent > swapped}
    assert after == {new}


def test_swap_through_the_admin_api_under_load_fails_no_request(
    launch: Callable[..., Any], own_models: Path
) -> None:
    server = launch(own_models, env={"TABSERVE_ADMIN_TOKEN": TOKEN})
    version = add_iris_version(own_models)

    def swap() -> None:
        response = httpx.post(
            f"{server.url}/v2/repository/models/iris/load",
            headers=AUTH,
            json={"version": version},
            timeout=60,
        )
        assert response.json()[0]["state"] == "ready"

    seen, swapped = swap_under_load(server.url, swap)
    assert_switched(seen, swapped, "2", str(version))


def test_the_directory_poller_picks_up_a_new_version_under_load(
    launch: Callable[..., Any], own_models: Path
) -> None:
    server = launch(own_models, "--workers", "2", env={"TABSERVE_POLL_SECONDS": "0.2"})

    def publish_and_wait() -> None:
        version = add_iris_version(own_models)
        deadline = time.monotonic() + 30
        streak = 0  # both workers poll: wait until many fresh connections agree
        while streak < 20:
            meta = httpx.get(f"{server.url}/v2/models/iris").json()
            streak = streak + 1 if meta["parameters"]["version"] == str(version) else 0
            assert time.monotonic() < deadline, "the poller never loaded the new version"
            time.sleep(0.02)

    seen, swapped = swap_under_load(server.url, publish_and_wait)
    assert_switched(seen, swapped, "2", "3")


@pytest.mark.parametrize("version", [True, "1", 1.0])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/repository/models/iris/unload"),
        ("POST", "/v2/repository/models/iris/load"),
        ("PUT", "/v2/repository/models/iris/default"),
    ],
)
def test_a_version_that_is_not_a_json_integer_is_refused_and_changes_nothing(
    admin: TestClient, method: str, path: str, version: object
) -> None:
    # lax parsing read `true` as version 1 and unloaded it (found by the fuzz suite)
    answer = admin.request(method, path, headers=AUTH, json={"version": version})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["details"][0]
    assert detail["field"] == "version"
    assert detail["expected"] == "an integer"
    index = admin.post("/v2/repository/index", headers=AUTH).json()
    assert {(i["name"], i["version"], i["state"]) for i in index if i["name"] == "iris"} == {
        ("iris", "1", "ready"),
        ("iris", "2", "ready"),
    }
    assert admin.get("/v2/models/iris").json()["parameters"]["version"] == "2"
