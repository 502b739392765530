"""The rollout admin routes: start, read, end, promote, and every refusal, through the lifespan."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tests.service.rollout_support import (
    AUTH,
    IRIS,
    TOKEN,
    add_iris_version,
    build_models,
    infer_version,
    put_rollout,
    samples,
    state_of,
    value,
)


@pytest.fixture(scope="module")
def rollout_models(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_models(models_dir, tmp_path_factory.mktemp("rollout-models"))


@pytest.fixture
def own_models(rollout_models: Path, tmp_path: Path) -> Path:
    """A private copy, free to add and remove versions in."""
    return Path(shutil.copytree(rollout_models, tmp_path / "models"))


@pytest.fixture
def admin(own_models: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=own_models, admin_token=TOKEN, inference_threads=2)
    with TestClient(create_app(settings)) as client:
        yield client


def default_version(client: TestClient, model: str = "iris") -> str:
    version: str = client.get(f"/v2/models/{model}").json()["parameters"]["version"]
    return version


def test_start_read_change_and_end_a_split(admin: TestClient) -> None:
    admin.put("/v2/repository/models/iris/default", headers=AUTH, json={"version": 1})
    started = put_rollout(admin, "iris", challenger=2, mode="split", share=0.25)
    assert started.status_code == 200, started.text
    body = started.json()
    assert {k: body[k] for k in ("model", "champion", "challenger", "mode", "share")} == {
        "model": "iris",
        "champion": 1,
        "challenger": 2,
        "mode": "split",
        "share": 0.25,
    }
    assert admin.get("/models/iris/rollout", headers=AUTH).json() == body
    assert (
        value(
            admin,
            "tabserve_rollout_active",
            model="iris",
            champion="1",
            challenger="2",
            mode="split",
        )
        == 1.0
    )
    # PUT again changes the share; the champion stays the one the rollout started with
    ramped = put_rollout(admin, "iris", challenger=2, mode="split", share=0.5).json()
    assert (ramped["champion"], ramped["share"]) == (1, 0.5)

    ended = admin.delete("/models/iris/rollout", headers=AUTH)
    assert ended.status_code == 200
    assert ended.json()["share"] == 0.5
    assert admin.get("/models/iris/rollout", headers=AUTH).status_code == 404
    assert default_version(admin) == "1"  # the pin set before the rollout is kept
    assert value(admin, "tabserve_rollout_ended_total", model="iris", reason="deleted") == 1.0
    active = {"model": "iris", "champion": "1", "challenger": "2", "mode": "split"}
    assert value(admin, "tabserve_rollout_active", **active) == 0.0
    assert set(samples(admin, "tabserve_rollout_active").values()) == {0.0}


def test_the_rollout_pins_its_champion_and_ending_it_unpins(
    admin: TestClient, own_models: Path
) -> None:
    assert put_rollout(admin, "iris", challenger=1, mode="shadow").status_code == 200
    # a version the poller (or an operator) loads mid-experiment does not take over
    assert add_iris_version(own_models) == 3
    state = state_of(admin)
    assert admin.portal is not None
    assert admin.portal.call(state.repository.follow_directory) is True
    assert default_version(admin) == "2"
    assert admin.get("/models/iris/rollout", headers=AUTH).json()["champion"] == 2
    # ending it goes back to "the highest version that is ready": the new one
    assert admin.delete("/models/iris/rollout", headers=AUTH).status_code == 200
    assert default_version(admin) == "3"


def test_promote_makes_the_challenger_the_default(admin: TestClient) -> None:
    put_rollout(admin, "iris", challenger=1, mode="split", share=0.1)
    promoted = admin.post("/models/iris/rollout/promote", headers=AUTH)
    assert promoted.status_code == 200
    assert promoted.json()["challenger"] == 1
    assert default_version(admin) == "1"
    assert infer_version(admin, "iris", IRIS[:1]) == "1"
    assert admin.get("/models/iris/rollout", headers=AUTH).status_code == 404
    index = admin.post("/v2/repository/index", headers=AUTH).json()
    assert {i["version"] for i in index if i["name"] == "iris" and i["default"]} == {"1"}
    assert value(admin, "tabserve_rollout_ended_total", model="iris", reason="promoted") == 1.0


def test_unloading_the_challenger_ends_the_rollout(admin: TestClient) -> None:
    put_rollout(admin, "iris", challenger=1, mode="split", share=1.0)
    assert infer_version(admin, "iris", IRIS[:1]) == "1"
    unloaded = admin.post("/v2/repository/models/iris/unload", headers=AUTH, json={"version": 1})
    assert unloaded.status_code == 200
    assert admin.get("/models/iris/rollout", headers=AUTH).status_code == 404
    assert infer_version(admin, "iris", IRIS[:1]) == "2"  # the champion keeps serving
    assert (
        value(admin, "tabserve_rollout_ended_total", model="iris", reason="challenger_gone") == 1.0
    )


def test_a_challenger_folder_removed_under_the_poller_ends_the_rollout(
    admin: TestClient, own_models: Path
) -> None:
    put_rollout(admin, "iris", challenger=1, mode="shadow")
    shutil.rmtree(own_models / "iris" / "1")
    assert admin.portal is not None
    admin.portal.call(state_of(admin).repository.follow_directory)
    assert admin.get("/models/iris/rollout", headers=AUTH).status_code == 404
    assert default_version(admin) == "2"
    assert (
        value(admin, "tabserve_rollout_ended_total", model="iris", reason="challenger_gone") == 1.0
    )


def test_choosing_another_default_ends_the_rollout(admin: TestClient) -> None:
    put_rollout(admin, "iris", challenger=1, mode="split", share=0.5)
    admin.put("/v2/repository/models/iris/default", headers=AUTH, json={"version": 1})
    assert admin.get("/models/iris/rollout", headers=AUTH).status_code == 404
    assert (
        value(admin, "tabserve_rollout_ended_total", model="iris", reason="champion_changed") == 1.0
    )


@pytest.mark.parametrize(
    ("model", "body", "field", "expected"),
    [
        (
            "iris",
            {"challenger": 9, "mode": "split", "share": 0.1},
            "challenger",
            "a loaded version of model 'iris' (1, 2)",
        ),
        (
            "iris",
            {"challenger": 2, "mode": "split", "share": 0.1},
            "challenger",
            "a version other than the champion",
        ),
        ("iris", {"challenger": 1, "mode": "split"}, "share", "a fraction in [0, 1]"),
        (
            "iris",
            {"challenger": 1, "mode": "shadow", "share": 0.5},
            "share",
            "no share for a shadow",
        ),
        (
            "mixed",
            {"challenger": 1, "mode": "shadow"},
            "challenger (version 1) features",
            "the champion's features in its order",
        ),
    ],
)
def test_refusals_name_the_field_the_value_and_what_was_expected(
    admin: TestClient, model: str, body: dict[str, object], field: str, expected: str
) -> None:
    refused = put_rollout(admin, model, **body)
    assert refused.status_code == 400, refused.text
    [problem] = refused.json()["details"]
    assert problem["field"] == field
    assert expected in problem["expected"]
    assert admin.get(f"/models/{model}/rollout", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"challenger": 1, "mode": "split", "share": 1.5}, "share"),
        ({"challenger": 1, "mode": "split", "share": -0.1}, "share"),
        ({"challenger": 1, "mode": "split", "share": "0.5"}, "share"),
        ({"challenger": 1, "mode": "canary", "share": 0.5}, "mode"),
        ({"challenger": "1", "mode": "shadow"}, "challenger"),
        ({"challenger": 0, "mode": "shadow"}, "challenger"),
        ({"challenger": 1, "mode": "shadow", "shares": 0.5}, "shares"),
    ],
)
def test_bodies_off_the_schema_are_422_naming_the_field(
    admin: TestClient, body: dict[str, object], field: str
) -> None:
    refused = put_rollout(admin, "iris", **body)
    assert refused.status_code == 422, refused.text
    assert any(field in p["field"] for p in refused.json()["details"]), refused.json()


def test_a_challenger_that_failed_to_load_is_refused(admin: TestClient, own_models: Path) -> None:
    add_iris_version(own_models)
    model_file = own_models / "iris" / "3" / "model.joblib"
    model_file.write_bytes(model_file.read_bytes()[:-10] + b"0123456789")
    attempt = admin.post("/v2/repository/models/iris/load", headers=AUTH, json={"version": 3})
    assert attempt.json()[0]["state"] == "failed"
    refused = put_rollout(admin, "iris", challenger=3, mode="shadow")
    assert refused.status_code == 400
    [problem] = refused.json()["details"]
    assert (problem["field"], problem["value"]) == ("challenger", 3)
    assert "a version that is ready (version 3 is failed" in problem["expected"]


def test_unknown_models_and_missing_rollouts_are_404(admin: TestClient) -> None:
    unknown = put_rollout(admin, "nope", challenger=2, mode="shadow")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "model_not_found")
    for method, path in [
        ("GET", "/models/iris/rollout"),
        ("DELETE", "/models/iris/rollout"),
        ("POST", "/models/iris/rollout/promote"),
    ]:
        missing = admin.request(method, path, headers=AUTH)
        assert (missing.status_code, missing.json()["code"]) == (404, "rollout_not_found")
        assert "PUT /models/iris/rollout" in missing.json()["error"]


def test_the_routes_need_the_admin_token(admin: TestClient, models_dir: Path) -> None:
    assert put_rollout(admin, "iris", challenger=1, mode="shadow").status_code == 200
    assert admin.get("/models/iris/rollout").status_code == 401
    wrong = admin.delete("/models/iris/rollout", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    with TestClient(create_app(Settings(models_dir=models_dir))) as closed:
        refused = closed.put("/models/iris/rollout", json={"challenger": 1, "mode": "shadow"})
        assert (refused.status_code, refused.json()["code"]) == (409, "feature_disabled")
        assert "/models/{model}/rollout" in closed.get("/openapi.json").json()["paths"]
