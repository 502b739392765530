"""Numbers read from paths, headers and queries: ASCII digits only, bounded, else a 4xx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tabserve.service.app import create_app
from tabserve.service.core.digits import parse_digits, parse_hex
from tabserve.service.settings import Settings
from tabserve.service.sinks.http import ReceiverError, _read_response

IRIS_ROW = [6.7, 3.0, 5.2, 2.3]
IRIS_RECORD = {
    "sepal_length_cm": 6.7,
    "sepal_width_cm": 3.0,
    "petal_length_cm": 5.2,
    "petal_width_cm": 2.3,
}
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]}
# Digits to str.isdigit() (and some to int()), none of them ASCII; then too many digits.
NOT_ASCII_DIGITS = ["\u00b2", "\u2460", "\u0661", "\uff11", "1\u00b2"]
BAD_NUMBERS = [*NOT_ASCII_DIGITS, "+1", " 1", "1_0", "0x1", "", "9" * 5000]


@pytest.mark.parametrize("text", ["0", "1", "007", "9" * 18])
def test_plain_ascii_digits_are_read(text: str) -> None:
    assert parse_digits(text) == int(text)
    assert parse_digits(text.encode()) == int(text)


@pytest.mark.parametrize("text", [*BAD_NUMBERS, "9" * 19, "1\n"])
def test_anything_else_is_refused(text: str) -> None:
    assert parse_digits(text) is None
    assert parse_digits(text.encode()) is None


@pytest.mark.parametrize("text", [b"0x1f", b"-1", b"+1", b"1_0", b"", b"f" * 17, b" 1"])
def test_chunk_sizes_are_plain_hex(text: bytes) -> None:
    assert parse_hex(text) is None
    assert parse_hex(b"1F") == 31


@pytest.mark.parametrize("version", [*NOT_ASCII_DIGITS, "9" * 5000])
def test_a_version_segment_not_in_ascii_digits_is_404_on_every_v2_route(
    fast_and_general: tuple[TestClient, TestClient], version: str
) -> None:
    segment = quote(version)
    for client in fast_and_general:
        answers = [
            client.post(f"/v2/models/iris/versions/{segment}/infer", json=V2_BODY),
            client.get(f"/v2/models/iris/versions/{segment}"),
            client.get(f"/v2/models/iris/versions/{segment}/ready"),
        ]
        for answer in answers:
            assert answer.status_code == 404, answer.text
            body = answer.json()
            assert body["code"] == "model_not_found"
            assert "ASCII digits" in body["error"]
            assert answer.headers["x-request-id"]
            assert answer.headers["x-content-type-options"] == "nosniff"


def test_arabic_indic_one_is_not_version_one(client: TestClient) -> None:
    assert client.post("/v2/models/iris/versions/1/infer", json=V2_BODY).status_code == 200
    answer = client.post(f"/v2/models/iris/versions/{quote(chr(0x661))}/infer", json=V2_BODY)
    assert answer.status_code == 404


@pytest.mark.parametrize("version", ["\u00b2", "9" * 5000])
def test_a_stream_on_a_version_not_in_ascii_digits_closes_4404(
    client: TestClient, version: str
) -> None:
    with (
        client.websocket_connect(f"/models/iris/versions/{quote(version)}/stream") as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_json()
    assert closed.value.code == 4404


@pytest.mark.parametrize("value", [b"\xb2", "\u0661".encode(), b"+5", b"1_000", b"9" * 5000])
def test_a_timeout_header_not_in_ascii_digits_is_400_on_every_route(
    fast_and_general: tuple[TestClient, TestClient], value: bytes
) -> None:
    headers = {"x-request-timeout-ms": value}
    for client in fast_and_general:
        answers = [
            client.post("/v2/models/iris/infer", json=V2_BODY, headers=headers),
            client.post("/models/iris/predict", json=IRIS_RECORD, headers=headers),
            client.post("/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers=headers),
        ]
        for answer in answers:
            assert answer.status_code == 400, answer.text
            detail = answer.json()["details"][0]
            assert detail["field"] == "X-Request-Timeout-Ms"
            assert "ASCII digits" in detail["expected"]


def test_a_stream_with_a_bad_timeout_header_closes_with_policy(client: TestClient) -> None:
    headers = {"x-request-timeout-ms": b"\xb2"}
    with (
        client.websocket_connect("/models/iris/stream", headers=headers) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_json()
    assert closed.value.code == 1008


@pytest.mark.parametrize("value", ["\u0661", "\uff11", "+1", " 1", "1_0", "9" * 5000])
def test_whole_numbers_in_queries_are_ascii_digits_only(drifting: TestClient, value: str) -> None:
    answer = drifting.get("/models/iris/drift", params={"version": value})
    assert answer.status_code == 422, answer.text
    assert answer.json()["details"][0]["field"] == "version"


@pytest.fixture
def drifting(settings: Settings) -> Iterator[TestClient]:
    """A client of an app with drift on, so `GET /models/{m}/drift?version=` exists."""
    with TestClient(create_app(settings.model_copy(update={"drift_enabled": True}))) as client:
        yield client


def _answer(raw: bytes) -> tuple[int, bool]:
    async def read() -> tuple[int, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await _read_response(reader)

    return asyncio.run(read())


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 2\xc2\xb2 OK\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_the_sink_refuses_answers_whose_numbers_are_not_plain_digits(head: bytes) -> None:
    with pytest.raises(ReceiverError):
        _answer(head)


def test_the_sink_reads_a_plain_answer() -> None:
    assert _answer(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok") == (202, True)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert _answer(chunked) == (200, True)
