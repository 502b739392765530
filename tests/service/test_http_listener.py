"""The end of the drain window: connections the kernel queued are served, not reset."""

from __future__ import annotations

import asyncio
import socket

from tabserve.service.http_listener import accept_queued, serve_accepted

QUEUED = 5


class Pong(asyncio.Protocol):
    """Answers one message with b"pong" and closes."""

    answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert data == b"ping"
        self.transport.write(b"pong")  # type: ignore[attr-defined]
        self.transport.close()
        Pong.answered += 1


def test_connections_queued_in_the_backlog_are_taken_and_served_after_the_close() -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=QUEUED * 2)
    # Nothing accepts yet: the kernel completes these handshakes and queues them, and
    # each client has sent its request, as a client does right after connecting.
    clients = [socket.create_connection(listener.getsockname(), timeout=30) for _ in range(QUEUED)]
    for client in clients:
        client.sendall(b"ping")

    async def end_of_window() -> None:
        loop = asyncio.get_running_loop()
        queued = accept_queued([listener])
        listener.close()  # the port is closed; what was queued is ours
        assert len(queued) == QUEUED
        await serve_accepted(queued, Pong, loop)
        while Pong.answered < QUEUED:
            await asyncio.sleep(0.01)

    asyncio.run(end_of_window())
    assert [client.recv(16) for client in clients] == [b"pong"] * QUEUED
    for client in clients:
        assert client.recv(16) == b""  # then a clean end, not a reset
        client.close()


def test_a_listener_with_nothing_queued_gives_nothing_and_stays_open() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        assert accept_queued([listener]) == []
        client = socket.create_connection(listener.getsockname(), timeout=30)
        accepted, _ = listener.accept()  # the server's own descriptor still listens
        accepted.close()
        client.close()
