"""Hardening through the real app: refused artifacts, input limits, error bodies, headers."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tabserve.artifact.seal import make_seal, write_seal
from tabserve.service.app import create_app
from tabserve.service.core.runtime import Runtime
from tabserve.service.settings import Settings
from tests.service.support import serve_with

IRIS_ROW = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}

# refused artifacts --------------------------------------------------------------------


def _flip_a_byte(version: Path) -> None:
    model = version / "model.joblib"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))


def _path_in_manifest(version: Path) -> None:
    manifest = json.loads((version / "model.json").read_text())
    manifest["artifact"]["file"] = "../../../outside/model.joblib"
    (version / "model.json").write_text(json.dumps(manifest))


def _model_symlinked_outside(version: Path) -> None:
    outside = version.parents[2] / "outside" / "model.joblib"
    shutil.move(version / "model.joblib", outside)
    (version / "model.joblib").symlink_to(outside)


def _folder_symlinked_outside(version: Path) -> None:
    outside = version.parents[2] / "outside" / "3"
    shutil.move(version, outside)
    version.symlink_to(outside, target_is_directory=True)


ATTACKS: list[tuple[Callable[[Path], None], str]] = [
    (_flip_a_byte, "the file is corrupt or was modified"),
    (_path_in_manifest, "invalid manifest: artifact.file: Value error, must be a plain file name"),
    (_model_symlinked_outside, "the model file resolves to "),
    (_folder_symlinked_outside, "the version folder resolves to "),
]


@pytest.fixture
def attacked_root(models_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's models plus iris version 3 (a copy of version 2) to attack."""
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    shutil.copytree(root / "iris" / "2", root / "iris" / "3")
    manifest = json.loads((root / "iris" / "3" / "model.json").read_text())
    manifest["version"] = 3
    (root / "iris" / "3" / "model.json").write_text(json.dumps(manifest))
    # sealed again, as an export of version 3 would be: the attacks below come after
    write_seal(root / "iris" / "3", make_seal((root / "iris" / "3" / "model.json").read_bytes()))
    (tmp_path / "outside").mkdir()
    return root


@pytest.mark.parametrize(("attack", "reason"), ATTACKS, ids=[a.__name__ for a, _ in ATTACKS])
def test_a_refused_artifact_fails_its_version_and_the_others_serve(
    attacked_root: Path, attack: Callable[[Path], None], reason: str
) -> None:
    attack(attacked_root / "iris" / "3")
    app = create_app(Settings(models_dir=attacked_root, inference_threads=1))
    with TestClient(app) as client:
        iris = client.get("/models/iris").json()
        states = {v["version"]: (v["state"], v["error"]) for v in iris["versions"]}
        assert states[1] == ("ready", None)
        assert states[2] == ("ready", None)
        assert states[3][0] == "failed"
        assert reason in states[3][1]
        # Paths relative to the models directory: where the server keeps files is not shown.
        assert states[3][1].startswith("iris/3")
        assert str(attacked_root.parent) not in states[3][1]

        infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}]}
        refused = client.post("/v2/models/iris/versions/3/infer", json=infer)
        assert refused.status_code == 503
        assert refused.json()["code"] == "model_not_ready"
        assert reason in refused.json()["error"]
        answer = client.post("/models/iris/versions/2/predict", json=IRIS_ROW)
        assert answer.status_code == 200
        assert answer.json()["predictions"][0]["prediction"] == "setosa"
        assert client.get("/v2/models/diabetes/ready").status_code == 200
        # the refused version never became the default: iris still serves, so the pod
        # stays ready, and requests naming no version get version 2
        assert client.get("/v2/health/ready").status_code == 200
        default = client.post("/models/iris/predict", json=IRIS_ROW)
        assert default.json()["version"] == 2
        failures = [
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("tabserve_model_load_failures_total{")
        ]
        assert failures == ['tabserve_model_load_failures_total{model="iris"} 1.0']


def test_a_version_swapped_in_through_the_repository_api_is_refused_the_same_way(
    attacked_root: Path,
) -> None:
    settings = Settings(models_dir=attacked_root, inference_threads=1, admin_token="t0ken")
    shutil.rmtree(attacked_root / "iris" / "3")  # start with versions 1 and 2
    with TestClient(create_app(settings)) as client:
        outside = attacked_root.parent / "outside" / "3"
        shutil.copytree(attacked_root / "iris" / "2", outside)
        manifest = json.loads((outside / "model.json").read_text())
        (outside / "model.json").write_text(json.dumps({**manifest, "version": 3}))
        (attacked_root / "iris" / "3").symlink_to(outside, target_is_directory=True)
        response = client.post(
            "/v2/repository/models/iris/load",
            headers={"Authorization": "Bearer t0ken"},
            json={"version": 3},
        )
        [attempt] = response.json()
        assert attempt["state"] == "failed"
        assert attempt["reason"].startswith("iris/3: the version folder resolves to ../outside/3,")
        assert str(attacked_root.parent) not in attempt["reason"]
        assert client.get("/v2/models/iris").json()["parameters"]["version"] == "2"
        assert client.post("/models/iris/predict", json=IRIS_ROW).status_code == 200


# input limits -------------------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-route"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Every test here runs with the V2 fast path on and off."""
    return settings.model_copy(update={"fast_path": request.param})


def _nested(depth: int) -> Any:
    """A value inside `depth - 1` arrays, so a record holding it is `depth` levels deep."""
    value: Any = 1.0
    for _ in range(depth - 1):
        value = [value]
    return value


def test_records_nested_past_the_limit_get_413_naming_it(client: TestClient) -> None:
    at_limit = client.post("/models/iris/predict", json={**IRIS_ROW, "sepal_width_cm": _nested(32)})
    assert at_limit.status_code == 400  # inside the limit: the feature check answers

    too_deep = client.post("/models/iris/predict", json={**IRIS_ROW, "sepal_width_cm": _nested(33)})
    assert too_deep.status_code == 413
    body = too_deep.json()
    where = "body.sepal_width_cm" + "[0]" * 31
    assert body == {
        "error": f"JSON body nests 33 levels deep at {where}; the limit is 32 "
        "(TABSERVE_MAX_JSON_DEPTH)",
        "code": "too_large",
        "details": [
            {
                "field": where,
                "index": None,
                "row": None,
                "value": "33 levels of arrays/objects",
                "expected": "at most 32 levels of nesting",
            }
        ],
    }


def test_v1_instances_nested_past_the_limit_get_413(client: TestClient) -> None:
    response = client.post("/v1/models/iris:predict", json={"instances": [_nested(40)]})
    assert response.status_code == 413
    assert response.json()["error"].startswith("JSON body nests 33 levels deep at body.instances")


def test_far_too_deep_json_is_a_4xx_in_the_error_shape(client: TestClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/models/iris/predict", "/v1/models/iris:predict", "/v2/models/iris/infer"):
        response = client.post(path, content=deep, headers={"content-type": "application/json"})
        assert response.status_code == 400, path
        assert set(response.json()) == {"error", "code", "details"}


def test_a_string_past_the_limit_gets_413_without_echoing_it(client: TestClient) -> None:
    row = {"age": 40, "city": "x" * 4097, "income": 2000.0}
    response = client.post("/models/churn/predict", json=row)
    assert response.status_code == 413
    assert response.json()["error"] == (
        "JSON string at body.city is 4097 characters long; the limit is 4096 "
        "(TABSERVE_MAX_STRING_LENGTH)"
    )
    assert response.json()["details"][0]["value"] == "a string of 4097 characters"
    assert len(response.content) < 1000

    at_limit = client.post("/models/churn/predict", json={**row, "city": "x" * 4096})
    assert at_limit.status_code == 400  # an unknown category, not a limit
    assert at_limit.json()["code"] == "invalid_input"
    assert at_limit.json()["details"][0]["value"] == "x" * 200 + "..."


def test_a_key_past_the_limit_gets_413(client: TestClient) -> None:
    response = client.post("/v1/models/iris:predict", json={"instances": [{"k" * 5000: 1}]})
    assert response.status_code == 413
    assert response.json()["error"].startswith(
        "JSON key at body.instances[0]." + "k" * 40 + " is 5000 characters long"
    )


def test_v2_bytes_elements_past_the_limit_get_413(client: TestClient) -> None:
    body = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "FP64", "data": [30, 40]},
            {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["paris", "y" * 4097]},
            {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
        ]
    }
    response = client.post("/v2/models/churn/infer", json=body)
    assert response.status_code == 413
    assert response.json()["error"] == (
        "input 'city' element 1 is 4097 characters long; the limit is 4096 "
        "(TABSERVE_MAX_STRING_LENGTH)"
    )
    body["inputs"][1]["data"] = ["paris", "y" * 4096]
    assert client.post("/v2/models/churn/infer", json=body).status_code == 400  # unknown city


def test_v2_binary_bytes_elements_are_limited_too(client: TestClient) -> None:
    city = b"z" * 5000
    binary = len(city).to_bytes(4, "little") + city
    header = {
        "inputs": [
            {"name": "age", "shape": [1], "datatype": "FP64", "data": [30]},
            {
                "name": "city",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(binary)},
            },
            {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.0]},
        ]
    }
    head = json.dumps(header).encode()
    response = client.post(
        "/v2/models/churn/infer",
        content=head + binary,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 413
    assert "input 'city' element 0 is 5000 characters long" in response.json()["error"]


# bugs schemathesis found --------------------------------------------------------------


def test_an_integer_past_64_bits_is_echoed_as_text_not_a_500(client: TestClient) -> None:
    response = client.post("/v1/models/iris:predict", json={"instances": [2**70]})
    assert response.status_code == 422
    assert {d["value"] for d in response.json()["details"]} == {str(2**70)}


@pytest.mark.parametrize("model", ["iris", "diabetes"])
def test_numbers_past_float32_range_get_400_not_a_500(client: TestClient, model: str) -> None:
    path = f"/v1/models/{model}:predict"
    width = 4 if model == "iris" else 10
    response = client.post(path, json={"instances": [[1e300] * width]})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert (
        "expected a number between -3.40282e+38 and 3.40282e+38, got 1e+300"
        in (response.json()["error"])
    )
    largest = client.post(path, json={"instances": [[3.4e38] * width]})
    assert largest.status_code == 200
    assert all(isinstance(p, str | float) for p in largest.json()["predictions"])


HUGE = 10**400 + 7  # JSON allows it; float64 cannot hold it


@pytest.mark.parametrize(
    "instance",
    [
        [HUGE, 3.0, 5.2, 2.3],
        {
            "sepal_length_cm": HUGE,
            "sepal_width_cm": 3.0,
            "petal_length_cm": 5.2,
            "petal_width_cm": 2.3,
        },
        [-HUGE, 3.0, 5.2, 2.3],
    ],
)
def test_an_integer_beyond_float64_is_400_naming_it(
    fast_and_general: tuple[TestClient, TestClient], instance: Any
) -> None:
    for client in fast_and_general:
        response = client.post("/v1/models/iris:predict", json={"instances": [instance]})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["code"] == "invalid_input"
        [detail] = body["details"]
        assert detail["field"] == "sepal_length_cm"
        assert (detail["index"], detail["row"]) == (0, 0)
        assert detail["expected"] == "a number between -3.40282e+38 and 3.40282e+38"
        assert detail["value"].lstrip("-").startswith("1000")
        rejected = client.get("/metrics").text
        assert 'tabserve_validation_errors_total{model="iris",reason="too_large_number"}' in (
            rejected
        )


def test_a_schema_error_lists_at_most_twenty_problems(client: TestClient) -> None:
    response = client.post("/v1/models/iris:predict", json={"instances": list(range(10_000))})
    assert response.status_code == 422
    body = response.json()
    assert len(body["details"]) == 20
    assert body["error"].endswith(" (and 19995 more)")  # two problems per instance
    assert len(response.content) < 10_000


# error bodies -------------------------------------------------------------------------


def test_405_and_404_are_json_errors(client: TestClient) -> None:
    wrong_method = client.delete("/models")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {
        "error": "Method Not Allowed",
        "code": "method_not_allowed",
        "details": [],
    }
    assert wrong_method.headers["allow"] == "GET"
    missing = client.get("/nothing/here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found", "code": "not_found", "details": []}


def test_an_unexpected_error_is_a_json_500_without_internals(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:

        def broken(features: Any) -> Any:
            raise RuntimeError("secret detail /srv/models")

        def breaking(runtime: Runtime) -> Runtime:
            monkeypatch.setattr(runtime, "predict", broken)
            return runtime

        serve_with(app.state.tabserve, "iris", breaking, version=2)
        v2_body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}]}
        for path, body in [
            ("/models/iris/versions/2/predict", IRIS_ROW),
            ("/v2/models/iris/versions/2/infer", v2_body),
        ]:
            response = client.post(path, json=body)
            assert response.status_code == 500, path
            assert response.json() == {
                "error": "internal error; the server log has the details",
                "code": "internal",
                "details": [],
            }
            assert "secret" not in response.text


# CORS ---------------------------------------------------------------------------------

ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "origin": ORIGIN,
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type",
}


def test_no_cors_headers_unless_configured(client: TestClient) -> None:
    preflight = client.options("/models/iris/predict", headers=PREFLIGHT)
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers
    # A page of another origin may not even make the browser predict (see origins.py).
    answer = client.post("/models/iris/predict", json=IRIS_ROW, headers={"origin": ORIGIN})
    assert answer.status_code == 403
    assert "access-control-allow-origin" not in answer.headers


def test_configured_origins_get_cors_headers(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": [ORIGIN]}))
    with TestClient(app) as client:
        preflight = client.options("/v2/models/iris/infer", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert preflight.headers["x-content-type-options"] == "nosniff"

        stranger = client.options(
            "/v2/models/iris/infer", headers={**PREFLIGHT, "origin": "https://evil.example"}
        )
        assert stranger.status_code == 400
        assert "access-control-allow-origin" not in stranger.headers

        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}]}
        for path, payload in [("/v2/models/iris/infer", body), ("/models/iris/predict", IRIS_ROW)]:
            answer = client.post(path, json=payload, headers={"origin": ORIGIN})
            assert answer.status_code == 200, path
            assert answer.headers["access-control-allow-origin"] == ORIGIN
            assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()


# security headers ---------------------------------------------------------------------

ALWAYS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
LOCKED = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}]}
API_CALLS: list[tuple[str, str, Any, int]] = [
    ("GET", "/v2/health/live", None, 200),
    ("GET", "/v2/health/ready", None, 200),
    ("GET", "/metrics", None, 200),
    ("GET", "/openapi.json", None, 200),
    ("GET", "/models", None, 200),
    ("POST", "/models/iris/predict", IRIS_ROW, 200),
    ("POST", "/models/iris/predict", {"sepal_length_cm": "x"}, 400),
    ("POST", "/v1/models/iris:predict", {"instances": [[1, 2, 3, 4]]}, 200),
    ("POST", "/v2/models/iris/infer", V2_BODY, 200),
    ("POST", "/v2/models/iris/versions/1/infer", {"inputs": []}, 400),
    ("POST", "/v2/models/nope/infer", V2_BODY, 404),
    ("DELETE", "/models", None, 405),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), API_CALLS)
def test_every_api_response_has_the_security_headers(
    client: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status
    for name, value in ALWAYS.items():
        assert response.headers.get_list(name) == [value], name
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == LOCKED


def test_docs_pages_get_a_policy_that_lets_them_render(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        for name, value in ALWAYS.items():
            assert response.headers[name] == value
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in response.headers["content-security-policy"].split(";")
        )
        html = response.text
        # Everything the page loads comes from this server, and it starts with an inline script.
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources
        assert all(s.startswith("/static-offline-docs/") for s in sources), sources
        assert re.search(r"<script>\s*\S", html) or "Redoc.init" in html or "<redoc" in html
        assert policy["script-src"] == "'self' 'unsafe-inline'"
        assert policy["connect-src"] == "'self'"  # the page fetches /openapi.json
        assert policy["frame-ancestors"] == "'none'"
        assert policy["default-src"] == "'none'"
        for source in sources:
            asset = client.get(source)
            assert asset.status_code == 200, source
            assert "cache-control" not in asset.headers  # assets may be cached
            assert asset.headers["x-content-type-options"] == "nosniff"


def test_record_answers_get_cors_headers_once_on_either_path(settings: Settings) -> None:
    """The express answer and one left to FastAPI's route each pass one CORS layer."""
    app = create_app(settings.model_copy(update={"cors_origins": [ORIGIN]}))
    out_of_range = {**IRIS_ROW, "sepal_length_cm": 50.0}  # left to the FastAPI route
    with TestClient(app) as client:
        for payload in (IRIS_ROW, out_of_range):
            answer = client.post("/models/iris/predict", json=payload, headers={"origin": ORIGIN})
            assert answer.status_code == 200
            assert answer.headers.get_list("access-control-allow-origin") == [ORIGIN]
            assert answer.headers.get_list("vary") == ["Origin"]
