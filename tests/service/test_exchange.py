"""How a request ends when its body is too large or its client leaves: 413 and 499."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tests.service.conftest import ServerProcess

LIMIT = 2048
RECORD = {
    "sepal_length_cm": 6.7,
    "sepal_width_cm": 3.0,
    "petal_length_cm": 5.2,
    "petal_width_cm": 2.3,
}
V2_BODY = {
    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.7, 3, 5.2, 2.3]}]
}
# (path, a body that is valid JSON for it and passes LIMIT once padded)
ROUTES = [
    ("/models/iris/predict", [RECORD] * 60),
    ("/models/iris/versions/1/predict", [RECORD] * 60),
    ("/v1/models/iris:predict", {"instances": [[6.7, 3.0, 5.2, 2.3]] * 100}),
    ("/v2/models/iris/infer", {**V2_BODY, "id": "x" * LIMIT}),
]


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-routes"])
def small_body_client(settings: Settings, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """A client of an app whose body limit is LIMIT bytes, fast paths on and off."""
    limited = settings.model_copy(update={"max_body_bytes": LIMIT, "fast_path": request.param})
    with TestClient(create_app(limited)) as client:
        yield client


def _chunked(payload: bytes) -> Iterator[bytes]:
    """A body without Content-Length: httpx sends a generator chunked."""
    for start in range(0, len(payload), 512):
        yield payload[start : start + 512]


@pytest.mark.parametrize(("path", "body"), ROUTES, ids=[p for p, _ in ROUTES])
def test_a_chunked_body_over_the_limit_is_413_in_the_error_shape(
    small_body_client: TestClient, path: str, body: object
) -> None:
    payload = json.dumps(body).encode()
    assert len(payload) > LIMIT
    answer = small_body_client.post(
        path,
        content=_chunked(payload),
        headers={"content-type": "application/json", "x-request-id": "big-1"},
    )
    assert answer.status_code == 413, answer.text
    assert answer.json() == {
        "error": f"request body exceeds the limit of {LIMIT} bytes",
        "code": "too_large",
        "details": [],
    }
    assert answer.headers["x-request-id"] == "big-1"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    assert _by_status(small_body_client.get("/metrics").text) == {"413": 1.0}


def test_a_chunked_body_within_the_limit_is_served(small_body_client: TestClient) -> None:
    payload = json.dumps([RECORD] * 5).encode()
    answer = small_body_client.post(
        "/models/iris/predict",
        content=_chunked(payload),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 5


# --- clients that leave: 499, not 500 ------------------------------------------------


def _abandon_upload(url: str, path: str, chunked: bool) -> None:
    """Send the headers and part of the body, then close the connection."""
    host, port = url.removeprefix("http://").split(":")
    framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: 5000"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    )
    part = b'[{"sepal_length_cm": 6.7, '
    body = f"{len(part):x}\r\n".encode() + part + b"\r\n" if chunked else part
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + body)


def _by_status(exposition: str) -> dict[str, float]:
    """POST request counts by status, over every route."""
    counts: dict[str, float] = {}
    for line in exposition.splitlines():
        found = re.match(r'tabserve_http_requests_total{.*"POST".*status="(\d+)"} (\S+)', line)
        if found:
            counts[found[1]] = counts.get(found[1], 0.0) + float(found[2])
    return counts


def _counts(url: str) -> dict[str, float]:
    return _by_status(httpx.get(url + "/metrics").text)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_aborted_uploads_are_counted_499_and_logged_never_500(
    server: ServerProcess, chunked: bool
) -> None:
    url = server.url
    before = _counts(url)
    paths = ["/models/iris/predict", "/v1/models/iris:predict", "/v2/models/iris/infer"]
    for path in paths * 5:
        _abandon_upload(url, path, chunked)
    # Normal requests meanwhile: the server serves, and the abandoned requests are
    # counted and their access-log lines written (in batches, every 0.1 s) in time.
    expected = before.get("499", 0.0) + len(paths) * 5
    for _ in range(2000):
        assert httpx.post(url + "/models/iris/predict", json=RECORD).status_code == 200
        after = _counts(url)
        log = server.log.read_text()
        logged = [re.findall(rf"POST {re.escape(p)} \S+ 499 ", log) for p in paths]
        if after.get("499", 0.0) >= expected and all(len(lines) >= 5 for lines in logged):
            break
    assert after.get("499", 0.0) == expected
    assert after.get("500", 0.0) == before.get("500", 0.0) == 0.0
    assert "Traceback" not in log
    assert all(len(lines) >= 5 for lines in logged), log[-3000:]
