"""Bodies are read as JSON under any Content-Type; other origins' pages are refused first."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tests.service.conftest import ServerProcess

ADMIN = "t0ken"
AUTH = {"authorization": f"Bearer {ADMIN}"}
RECORD = {
    "sepal_length_cm": 6.7,
    "sepal_width_cm": 3.0,
    "petal_length_cm": 5.2,
    "petal_width_cm": 2.3,
}
CONTENT_TYPES: list[str | None] = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "garbage;;=",
    "",
]
# What clients send to the record routes: the express lane's shape, and everything
# that lane leaves to the FastAPI route (errors included).
RECORD_BODIES: list[bytes] = [
    json.dumps(RECORD).encode(),
    json.dumps([RECORD, RECORD]).encode(),
    json.dumps({**RECORD, "petal_width_cm": 99.0}).encode(),  # out of the training range
    json.dumps({**RECORD, "petal_width_cm": "wide"}).encode(),
    json.dumps({**RECORD, "petal_widht_cm": 2.3}).encode(),
    json.dumps({**RECORD, "extra": 1}).encode(),
    json.dumps({**RECORD, "petal_width_cm": 10**400}).encode(),
    json.dumps([]).encode(),
    json.dumps([[6.7, 3.0, 5.2, 2.3]]).encode(),
    b"sepal_length_cm=6.7&sepal_width_cm=3.0",
    b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--xyz--\r\n",
    b"",
    b"\xff\xfe not json",
]


def _headers(content_type: str | None, **extra: str) -> dict[str, str]:
    return {**({} if content_type is None else {"content-type": content_type}), **extra}


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_the_records_lane_and_the_fastapi_route_agree_under_every_content_type(
    fast_and_general: tuple[TestClient, TestClient], content_type: str | None
) -> None:
    fast, general = fast_and_general
    for number, body in enumerate(RECORD_BODIES):
        for path in ("/models/iris/predict", "/models/iris/versions/1/predict"):
            headers = _headers(content_type, **{"x-request-id": f"same-{number}"})
            one = fast.post(path, content=body, headers=headers)
            other = general.post(path, content=body, headers=headers)
            where = f"{path} {content_type!r} {body[:60]!r}"
            assert one.status_code == other.status_code, where
            assert one.json() == other.json(), where
            assert one.status_code != 500, where
    # Not a vacuous comparison: the lane answers the common shapes itself.
    served = fast.post("/models/iris/predict", content=RECORD_BODIES[0], headers=_headers(None))
    assert served.status_code == 200


@pytest.fixture
def admin_client(settings: Settings) -> Iterator[TestClient]:
    """A client of an app with the repository API on."""
    with TestClient(
        create_app(settings.model_copy(update={"admin_token": SecretStr(ADMIN)}))
    ) as client:
        yield client


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_json_bodies_are_read_as_json_on_every_route(
    fast_and_general: tuple[TestClient, TestClient],
    admin_client: TestClient,
    content_type: str | None,
) -> None:
    instances = json.dumps({"instances": [[6.7, 3.0, 5.2, 2.3]]})
    v2 = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.7, 3, 5, 2]}]}
    for client in fast_and_general:
        answers = [
            client.post(
                "/v1/models/iris:predict", content=instances, headers=_headers(content_type)
            ),
            client.post(
                "/models/iris/predict", content=json.dumps(RECORD), headers=_headers(content_type)
            ),
            client.post(
                "/v2/models/iris/infer", content=json.dumps(v2), headers=_headers(content_type)
            ),
        ]
        for answer in answers:
            assert answer.status_code == 200, (answer.request.url, answer.text)
    headers = _headers(content_type, **AUTH)
    load = admin_client.post(
        "/v2/repository/models/iris/load", content='{"version": 1}', headers=headers
    )
    assert load.status_code == 200, load.text
    chosen = admin_client.put(
        "/v2/repository/models/iris/default", content='{"version": 1}', headers=headers
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["version"] == "1"
    gone = admin_client.post(
        "/v2/repository/models/iris/unload", content='{"version": 2}', headers=headers
    )
    assert gone.status_code == 200, gone.text


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_a_body_that_is_not_json_is_400_under_every_content_type(
    fast_and_general: tuple[TestClient, TestClient],
    admin_client: TestClient,
    content_type: str | None,
) -> None:
    requests: list[tuple[TestClient, str, dict[str, str]]] = [
        (client, path, _headers(content_type))
        for client in fast_and_general
        for path in ("/v1/models/iris:predict", "/models/iris/predict")
    ]
    requests.append(
        (admin_client, "/v2/repository/models/iris/load", _headers(content_type, **AUTH))
    )
    for client, path, headers in requests:
        answer = client.post(path, content=b"instances=1&x=2", headers=headers)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["code"] == "malformed_json"


def test_the_readme_curl_examples_work_as_written(server: ServerProcess) -> None:
    """curl's `-d` sends application/x-www-form-urlencoded: the README's examples use it."""

    def curl(path: str, body: str) -> Any:
        done = subprocess.run(
            ["curl", "-s", "-w", "\n%{http_code}", server.url + path, "-d", body],
            capture_output=True,
            text=True,
            check=True,
        )
        text, status = done.stdout.rsplit("\n", 1)
        assert status == "200", text
        return json.loads(text)

    v1 = curl("/v1/models/iris:predict", '{"instances": [[6.7, 3.0, 5.2, 2.3]]}')
    assert v1["predictions"] == ["virginica"]
    records = curl("/models/iris/predict", json.dumps(RECORD))
    assert records["predictions"][0]["prediction"] in {"virginica", "versicolor"}


# --- pages of other origins -------------------------------------------------------------

ALLOWED = "https://app.example"
FOREIGN = "https://evil.example"


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-routes"])
def guarded(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    """The log, the repository API and CORS for one origin on; fast paths on and off."""
    configured = settings.model_copy(
        update={
            "fast_path": request.param,
            "admin_token": SecretStr(ADMIN),
            "cors_origins": [ALLOWED],
            "predlog_mode": "all",
            "data_dir": tmp_path / "data",
            "predlog_flush_seconds": 0.05,
        }
    )
    with TestClient(create_app(configured)) as client:
        yield client


def _rows_served(client: TestClient) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("tabserve_inference_rows_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_state_changing_request_from_another_origin_is_refused_before_any_work(
    guarded: TestClient,
) -> None:
    client = guarded
    logged = client.post("/models/iris/predict", json=RECORD, headers={"x-request-id": "own"})
    assert logged.status_code == 200
    rows = _rows_served(client)
    log = client.app.state.tabserve.predlog  # type: ignore[attr-defined]
    assert log.writer.flush(30)  # the row is stored, so the log's contents below are final
    v2 = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.7, 3, 5, 2]}]}
    foreign = {"origin": FOREIGN, "content-type": "text/plain", "x-request-id": "evil"}
    attempts = [
        client.post("/models/iris/predict", content=json.dumps(RECORD), headers=foreign),
        client.post("/models/iris/versions/2/predict", content=json.dumps(RECORD), headers=foreign),
        client.post(
            "/v1/models/iris:predict", content='{"instances": [[1, 2, 3, 4]]}', headers=foreign
        ),
        client.post("/v2/models/iris/infer", content=json.dumps(v2), headers=foreign),
        client.post(
            "/models/iris/feedback",
            content='{"request_id": "own", "truth": "setosa"}',
            headers=foreign,
        ),
        client.post(
            "/v2/repository/models/iris/unload",
            content='{"version": 2}',
            headers={**foreign, **AUTH},
        ),
        client.put(
            "/v2/repository/models/iris/default",
            content='{"version": 1}',
            headers={**foreign, **AUTH},
        ),
    ]
    for answer in attempts:
        assert answer.status_code == 403, (answer.request.url, answer.text)
        body = answer.json()
        assert body["code"] == "cross_origin_refused"
        assert body["details"][0]["field"] == "Origin"
        assert body["details"][0]["value"] == FOREIGN
        assert answer.headers["x-request-id"] == "evil"
        assert "access-control-allow-origin" not in answer.headers
    # Nothing ran: no model call, no log row, no truth, the repository unchanged.
    assert _rows_served(client) == rows
    assert log.writer.flush(30)
    page = client.get("/models/iris/predictions").json()
    assert [item["request_id"] for item in page["items"]] == ["own"]
    assert page["items"][0]["truth"] is None
    assert client.get("/v2/models/iris").json()["parameters"]["version"] == "2"
    # Reading is not refused: CORS keeps the page from seeing the answer.
    assert client.get("/models", headers={"origin": FOREIGN}).status_code == 200


@pytest.mark.parametrize(
    "origin", [None, ALLOWED, "http://testserver"], ids=["no-origin", "allowed", "same-origin"]
)
def test_requests_without_a_foreign_origin_are_served(
    guarded: TestClient, origin: str | None
) -> None:
    headers = {"content-type": "text/plain", **({"origin": origin} if origin else {})}
    answer = guarded.post("/models/iris/predict", content=json.dumps(RECORD), headers=headers)
    assert answer.status_code == 200, answer.text
    feedback = guarded.post(
        "/models/iris/feedback",
        content=json.dumps({"request_id": answer.json()["request_id"], "truth": "virginica"}),
        headers=headers,
    )
    assert feedback.status_code == 200
    assert feedback.json()["accepted"] == 1
