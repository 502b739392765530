"""Real servers, raw sockets: oversized heads get 431, slow requests 408, and both close.

Each case runs against one uvicorn process and against gunicorn with two uvicorn
workers, the two ways `tabserve serve` runs.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tabserve.service.api.middleware import API_HEADERS
from tabserve.service.http_guard import SECURITY_HEADERS
from tests.service.conftest import kill_group, start_server

ROW = orjson.dumps(
    {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}
)
# Far above anything the tests wait for: only a hang guard, never a measured bound.
HANG_GUARD_SECONDS = 60


@dataclass
class Answer:
    """One HTTP answer read off a raw socket, and whether the server closed after it."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed_after: bool

    def json(self) -> Any:
        return orjson.loads(self.body)


def read_answer(sock: socket.socket) -> Answer:
    """Read one answer, then whether the connection ends (EOF) right after it."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed without an answer (got {buffer!r})"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of the body"
        rest += chunk
    closed = rest[length:] == b"" and _eof(sock)
    return Answer(int(lines[0].split()[1]), headers, rest[:length], closed)


def _eof(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return False


def predict_request(extra_headers: bytes = b"") -> bytes:
    return (
        b"POST /models/iris/predict HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        + extra_headers
        + b"content-length: %d\r\n\r\n" % len(ROW)
        + ROW
    )


@pytest.fixture(scope="module", params=["1", "2"], ids=["uvicorn", "gunicorn-2-workers"])
def guarded_port(request: pytest.FixtureRequest, models_dir: Path) -> Iterator[int]:
    """A server with a 1 s read timeout, for the module; yields its port."""
    env = {"TABSERVE_REQUEST_READ_TIMEOUT_SECONDS": "1"}
    server = start_server(models_dir, "--workers", request.param, env=env)
    try:
        yield int(server.url.rsplit(":", 1)[1])
    finally:
        kill_group(server.process)


@pytest.fixture
def guarded(guarded_port: int) -> Iterator[Callable[[], socket.socket]]:
    """Opens raw connections to the guarded server; closes them after the test."""
    port = guarded_port
    opened: list[socket.socket] = []

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_SECONDS)
        opened.append(sock)
        return sock

    yield connect
    for sock in opened:
        sock.close()


def _assert_refused(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status
    assert answer.json()["code"] == code
    assert answer.headers["connection"] == "close"
    assert answer.headers["content-type"] == "application/json"
    assert answer.closed_after


@pytest.mark.slow
@pytest.mark.parametrize(
    "headers",
    [
        b"x-big: " + b"a" * (1 << 20) + b"\r\n",  # one 1 MiB header
        b"".join(b"x-h%d: v\r\n" % i for i in range(50_000)),  # 50,000 small ones
    ],
    ids=["one-huge-header", "fifty-thousand-headers"],
)
def test_a_head_over_64_kib_gets_431_and_its_connection_closes(
    guarded: Callable[[], socket.socket], headers: bytes
) -> None:
    sock = guarded()
    sock.sendall(predict_request(headers))
    answer = read_answer(sock)
    _assert_refused(answer, 431, "header_too_large")
    assert answer.json()["details"][0]["expected"] == (
        "a request line and headers of at most 65536 bytes"
    )
    fresh = guarded()  # the server still serves
    fresh.sendall(predict_request())
    assert read_answer(fresh).status == 200


@pytest.mark.slow
def test_a_head_just_under_the_limit_is_served(guarded: Callable[[], socket.socket]) -> None:
    sock = guarded()
    headers = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(60))
    sock.sendall(predict_request(headers))  # about 61 KiB
    answer = read_answer(sock)
    assert answer.status == 200
    assert answer.json()["predictions"][0]["prediction"] == "setosa"


SLOW_STARTS = {
    "says-nothing": b"",
    "half-a-head": b"POST /models/iris/predict HTTP/1.1\r\nhost: t\r\nx-slow: ",
    "half-a-body": predict_request()[: -len(ROW) // 2],
}


@pytest.mark.slow
def test_requests_that_do_not_arrive_in_time_get_408_and_close(
    guarded: Callable[[], socket.socket],
) -> None:
    slow = {name: guarded() for name in SLOW_STARTS}
    for name, start in SLOW_STARTS.items():
        slow[name].sendall(start)
    # a normal client is served meanwhile, on its own connection
    normal = guarded()
    normal.sendall(predict_request())
    assert read_answer(normal).status == 200
    for sock in slow.values():
        _assert_refused(read_answer(sock), 408, "request_timeout")


@pytest.mark.slow
def test_a_keep_alive_connection_times_each_request_from_its_first_byte(
    guarded: Callable[[], socket.socket],
) -> None:
    sock = guarded()
    for _ in range(3):  # the deadline of a request is not the connection's
        sock.sendall(predict_request())
        answer = read_answer_keeping(sock)
        assert answer.status == 200
    sock.sendall(b"POST /models/iris/predict HTTP/1.1\r\n")
    _assert_refused(read_answer(sock), 408, "request_timeout")


@pytest.mark.slow
def test_a_request_begun_late_on_a_connection_gets_its_whole_time(
    guarded: Callable[[], socket.socket],
) -> None:
    # The guard keeps one timer per connection, armed when the connection opened: a
    # request that begins 0.7 s later and takes 0.45 s to arrive ends past that first
    # timer's second, yet within its own (the timer re-arms for what the request has left).
    sock = guarded()
    sock.sendall(predict_request())
    assert read_answer_keeping(sock).status == 200
    time.sleep(0.7)
    request = predict_request()
    sock.sendall(request[:40])
    time.sleep(0.45)
    sock.sendall(request[40:])
    assert read_answer_keeping(sock).status == 200


def read_answer_keeping(sock: socket.socket) -> Answer:
    """Read one answer without looking for the end of the connection."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed without an answer"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    return Answer(int(lines[0].split()[1]), headers, rest, closed_after=False)


RequestCounts = dict[tuple[str, str, str], float]


def request_counts(port: int) -> RequestCounts:
    """`tabserve_http_requests_total` by (route, method, status), summed over workers."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=HANG_GUARD_SECONDS).text
    counts: RequestCounts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "tabserve_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    counts[(labels["route"], labels["method"], labels["status"])] = sample.value
    return counts


def counted_since(before: RequestCounts, port: int) -> RequestCounts:
    """What `tabserve_http_requests_total` gained since `before`, scrapes left out."""
    after = request_counts(port)
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value != before.get(key, 0.0) and key[0] != "/metrics"
    }


@pytest.mark.slow
def test_refusals_are_counted_as_requests_with_their_status(
    guarded: Callable[[], socket.socket], guarded_port: int
) -> None:
    before = request_counts(guarded_port)
    big = guarded()
    big.sendall(predict_request(b"x-big: " + b"a" * 70_000 + b"\r\n"))
    _assert_refused(read_answer(big), 431, "header_too_large")
    garbled = guarded()
    garbled.sendall(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    _assert_refused(read_answer(garbled), 400, "invalid_http")
    v1_body = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
    slow_starts = {
        **SLOW_STARTS,
        # A route (not an express lane) is chosen before the body is read.
        "half-a-body": b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: t\r\n"
        + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(v1_body)
        + v1_body[:10],
    }
    slow = {name: guarded() for name in slow_starts}
    for name, start in slow_starts.items():
        slow[name].sendall(start)
    for sock in slow.values():
        _assert_refused(read_answer(sock), 408, "request_timeout")
    # The slow body's app counts it once it has seen the refusal: wait for that.
    routed = ("/v1/models/{model}:predict", "POST", "408")
    counted = counted_since(before, guarded_port)
    while not any(key[0] == routed[0] for key in counted):
        counted = counted_since(before, guarded_port)
    assert counted == {
        ("<unrouted>", "POST", "431"): 1,  # the request line had arrived
        ("<unrouted>", "GET", "400"): 1,
        ("<unrouted>", "<unparsed>", "408"): 1,  # said nothing
        ("<unrouted>", "POST", "408"): 1,  # half a head
        routed: 1,  # half a body: the app had started on it
    }


def test_refusals_carry_the_security_headers_of_api_answers() -> None:
    expected = b"".join(name + b": " + value + b"\r\n" for name, value in API_HEADERS)
    assert expected == SECURITY_HEADERS
