"""One write per answer: the coalescing transport, uvicorn's protocol on it, a real server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from tabserve.service.api.deadlines import client_left
from tabserve.service.app import create_app
from tabserve.service.http_guard import GuardedHttpProtocol
from tabserve.service.http_protocol import HOLD_BYTES, CoalescingTransport, TabserveHttpProtocol
from tabserve.service.server import http_protocol
from tabserve.service.settings import Settings
from tests.service.conftest import HeldRuntime, free_port
from tests.service.support import serve_with


class RecordingTransport(asyncio.Transport):
    """A socket's transport stand-in: records every call in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.calls.append(("pause_reading", b""))

    def resume_reading(self) -> None:
        self.calls.append(("resume_reading", b""))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}
        return addresses.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    @property
    def writes(self) -> list[bytes]:
        return [data for call, data in self.calls if call == "write"]


Scenario = Callable[[RecordingTransport, CoalescingTransport], Any]


def in_loop(scenario: Scenario) -> None:
    """Run `scenario(socket_side, transport)` in an event loop; `transport` wraps `socket_side`."""

    async def main() -> None:
        socket_side = RecordingTransport()
        result = scenario(socket_side, CoalescingTransport(socket_side, asyncio.get_running_loop()))
        if asyncio.iscoroutine(result):
            await result

    asyncio.run(main())


def test_writes_in_one_loop_turn_reach_the_socket_as_one_write() -> None:
    async def scenario(socket_side: RecordingTransport, transport: CoalescingTransport) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"ok")
        assert socket_side.calls == []
        await asyncio.sleep(0)
        assert socket_side.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
        transport.write(b"next")
        await asyncio.sleep(0)
        assert socket_side.writes[1:] == [b"next"]

    in_loop(scenario)


def test_close_sends_the_held_bytes_before_closing() -> None:
    def scenario(socket_side: RecordingTransport, transport: CoalescingTransport) -> None:
        transport.write(b"answer")
        transport.close()
        assert socket_side.calls == [("write", b"answer"), ("close", b"")]

    in_loop(scenario)


def test_other_transport_calls_come_after_the_writes_held_before_them() -> None:
    def scenario(socket_side: RecordingTransport, transport: CoalescingTransport) -> None:
        transport.write(b"first")
        transport.pause_reading()
        transport.write(b"second")
        transport.resume_reading()
        assert socket_side.calls == [
            ("write", b"first"),
            ("pause_reading", b""),
            ("write", b"second"),
            ("resume_reading", b""),
        ]

    in_loop(scenario)


def test_a_write_reaching_the_hold_limit_goes_out_at_once() -> None:
    def scenario(socket_side: RecordingTransport, transport: CoalescingTransport) -> None:
        transport.write(b"headers\r\n\r\n")
        assert socket_side.writes == []
        body = b"x" * HOLD_BYTES
        transport.write(body)
        assert socket_side.writes == [b"headers\r\n\r\n" + body]

    in_loop(scenario)


def test_held_bytes_are_dropped_once_the_connection_is_closing() -> None:
    async def scenario(socket_side: RecordingTransport, transport: CoalescingTransport) -> None:
        transport.write(b"too late")
        socket_side.closing = True  # the peer went away in this loop turn
        await asyncio.sleep(0)
        assert socket_side.writes == []

    in_loop(scenario)


def test_a_bytearray_reused_after_write_is_sent_as_it_was_written() -> None:
    async def scenario(socket_side: RecordingTransport, transport: CoalescingTransport) -> None:
        buffer = bytearray(b"frame one")
        transport.write(buffer)
        buffer[:] = b"frame two"
        await asyncio.sleep(0)
        assert socket_side.writes == [b"frame one"]

    in_loop(scenario)


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering every request with headers, then a body, as apps do."""
    if scope["type"] != "http":
        return
    await receive()
    body = scope["path"].encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def exchange(protocol_class: type[HttpToolsProtocol], request: bytes) -> list[bytes]:
    """The writes uvicorn's protocol makes on the socket while answering `request`."""
    socket_side = await converse(protocol_class, request)
    return socket_side.writes


async def converse(protocol_class: type[HttpToolsProtocol], request: bytes) -> RecordingTransport:
    """The socket's side of uvicorn's protocol answering `request`, every call in order."""
    config = uvicorn.Config(hello, http=protocol_class, lifespan="off", log_level="warning")
    config.load()
    state = ServerState()
    socket_side = RecordingTransport()
    protocol = protocol_class(config=config, server_state=state, app_state={})
    protocol.connection_made(socket_side)
    protocol.data_received(request)
    for _ in range(100):
        await asyncio.sleep(0)
        if not state.tasks:
            break
    await asyncio.sleep(0)  # the end of the turn in which the answer was written
    protocol.connection_lost(None)
    return socket_side


@pytest.mark.parametrize(
    ("protocol_class", "writes_per_answer"),
    [(TabserveHttpProtocol, 1), (HttpToolsProtocol, 2)],
    ids=["tabserve", "uvicorn-own"],
)
def test_each_answer_is_one_write_where_uvicorns_own_protocol_makes_two(
    protocol_class: type[HttpToolsProtocol], writes_per_answer: int
) -> None:
    request = b"GET /first HTTP/1.1\r\nhost: t\r\n\r\n"
    writes = asyncio.run(exchange(protocol_class, request))
    assert len(writes) == writes_per_answer
    answer = b"".join(writes)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n/first")


def test_pipelined_requests_get_their_answers_in_order() -> None:
    request = b"GET /one HTTP/1.1\r\nhost: t\r\n\r\nGET /two HTTP/1.1\r\nhost: t\r\n\r\n"
    answer = b"".join(asyncio.run(exchange(TabserveHttpProtocol, request)))
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.index(b"\r\n\r\n/one") < answer.index(b"\r\n\r\n/two")
    assert answer.endswith(b"\r\n\r\n/two")


def test_a_closing_connection_gets_its_answer_in_one_write_before_the_close() -> None:
    request = b"GET /last HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    socket_side = asyncio.run(converse(TabserveHttpProtocol, request))
    calls = [call for call, _ in socket_side.calls]
    assert calls[:2] == ["write", "close"]
    assert "write" not in calls[2:]
    assert socket_side.calls[0][1].endswith(b"\r\n\r\n/last")


def test_a_websocket_upgrade_hands_the_socket_its_own_transport() -> None:
    async def scenario() -> None:
        config = uvicorn.Config(hello, ws="websockets-sansio", lifespan="off", log_level="warning")
        config.load()
        socket_side = RecordingTransport()
        protocol = TabserveHttpProtocol(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(socket_side)
        protocol.data_received(
            b"GET /stream HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        )
        websocket = socket_side.protocol
        assert websocket is not protocol
        assert websocket.transport is socket_side  # type: ignore[attr-defined]
        websocket.connection_lost(None)

    asyncio.run(scenario())


@pytest.mark.parametrize("protocol_class", [TabserveHttpProtocol, HttpToolsProtocol])
def test_the_scope_tells_at_no_cost_whether_the_client_has_left(
    protocol_class: type[HttpToolsProtocol],
) -> None:
    async def scenario() -> None:
        scopes: list[dict[str, Any]] = []

        async def waiting(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scopes.append(scope)
            await receive()  # the (empty) body
            await receive()  # returns once the client has gone

        config = uvicorn.Config(waiting, lifespan="off", log_level="warning")
        config.load()
        state = ServerState()
        protocol = protocol_class(config=config, server_state=state, app_state={})
        protocol.connection_made(RecordingTransport())
        protocol.data_received(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        while not scopes:
            await asyncio.sleep(0)
        left = client_left(scopes[0])
        if protocol_class is HttpToolsProtocol:
            assert left is None  # uvicorn's own protocol offers no such check
        else:
            assert left is not None
            assert left() is False
        protocol.connection_lost(None)
        if left is not None:
            assert left() is True
        while state.tasks:
            await asyncio.sleep(0)

    asyncio.run(scenario())


def test_the_setting_picks_the_protocol() -> None:
    coalescing = http_protocol(Settings(max_header_bytes=4096))
    assert issubclass(coalescing, TabserveHttpProtocol)
    assert coalescing.limits.max_header_bytes == 4096  # type: ignore[attr-defined]
    plain = http_protocol(Settings(coalesce_writes=False))
    assert issubclass(plain, GuardedHttpProtocol)
    assert not issubclass(plain, TabserveHttpProtocol)


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` HTTP/1.1 answers (status, body) read off one connection, in order."""
    buffer = b""
    answers: list[tuple[int, bytes]] = []
    while len(answers) < count:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(answers)} answers"
        buffer += chunk
        while b"\r\n\r\n" in buffer:
            head, _, rest = buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
            length = int(fields[b"content-length"])
            if len(rest) < length:
                break
            answers.append((int(lines[0].split()[1]), rest[:length]))
            buffer = rest[length:]
    return answers


def post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize("coalesce", ["true", "false"])
def test_a_real_server_answers_pipelined_small_and_large_requests_in_order(
    launch: Callable[..., Any], models_dir: Path, coalesce: str
) -> None:
    server = launch(models_dir, env={"TABSERVE_COALESCE_WRITES": coalesce})
    port = int(server.url.rsplit(":", 1)[1])
    setosa = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
    }
    record = {
        "sepal_length_cm": 6.7,
        "sepal_width_cm": 3.0,
        "petal_length_cm": 5.2,
        "petal_width_cm": 2.3,
    }
    requests = [
        post("/v2/models/iris/infer", orjson.dumps(setosa)),
        b"GET /openapi.json HTTP/1.1\r\nhost: t\r\n\r\n",
        post("/models/iris/predict", orjson.dumps(record)),
        post("/v2/models/iris/infer", b'{"inputs": "nope"}'),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        answers = read_answers(sock, len(requests))
    statuses = [status for status, _ in answers]
    assert statuses == [200, 200, 200, 400]
    assert orjson.loads(answers[0][1])["outputs"][0]["data"] == ["setosa"]
    schema = orjson.loads(answers[1][1])
    assert len(answers[1][1]) > HOLD_BYTES
    assert "/v2/models/{model}/infer" in schema["paths"]
    assert orjson.loads(answers[2][1])["predictions"][0]["prediction"] == "virginica"
    assert "inputs" in answers[3][1].decode()


IRIS_FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


class CountingHeld(HeldRuntime):
    """A held runtime that also counts the rows of each call."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.calls: list[int] = []

    def predict(self, features: Any) -> Any:
        self.calls.append(len(features))
        return super().predict(features)


@pytest.mark.parametrize(
    ("coalesce", "calls"), [(True, [1, 1]), (False, [1, 1, 1])], ids=["tabserve", "uvicorn-own"]
)
def test_a_request_whose_client_left_within_the_watch_delay_is_not_computed(
    models_dir: Path, coalesce: bool, calls: list[int]
) -> None:
    """A real server in this process: one request holds the model, a second queues,
    its client hangs up at once; our protocol lets the next call skip it (uvicorn's
    own would need the watcher, which starts only after 0.25 s in the queue)."""
    settings = Settings(models_dir=models_dir, coalesce_writes=coalesce, drift_enabled=False)
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=http_protocol(settings), log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < started:
        time.sleep(0.01)
    assert server.started
    held = serve_with(app.state.tabserve, "iris", CountingHeld)
    model = app.state.tabserve.registry.ready("iris")
    try:
        body = orjson.dumps(dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True)))
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        first.sendall(post("/models/iris/predict", body))
        assert held.entered.wait(timeout=10)
        leaving = socket.create_connection(("127.0.0.1", port), timeout=10)
        leaving.sendall(post("/models/iris/predict", body))
        deadline = time.monotonic() + 10
        while model.batcher.queued_rows != 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert model.batcher.queued_rows == 1
        queued = time.monotonic()
        leaving.close()
        connections = server.server_state.connections
        while len(connections) > 1 and time.monotonic() < deadline:
            time.sleep(0.002)  # until the server has seen the hang-up
        assert len(connections) == 1
        waited = time.monotonic() - queued
        held.release.set()
        assert read_answers(first, 1)[0][0] == 200
        # One more request: calls run in queue order, so the leaver's (if any) came first.
        first.sendall(post("/models/iris/predict", body))
        assert read_answers(first, 1)[0][0] == 200
        first.close()
        if waited > 0.2 and not coalesce:
            pytest.skip(f"the leaver waited {waited:.2f} s: its watcher may have dropped it")
        assert held.calls == calls
    finally:
        held.release.set()
        server.should_exit = True
        thread.join(timeout=30)
