"""The HTTP/1.1 protocol the server runs: uvicorn's httptools protocol, one write per answer.

uvicorn hands a response to the socket in two `transport.write` calls, the status
line with headers and then the body. Each is its own send(2) and, as the socket
has TCP_NODELAY, its own segment: the client wakes to read headers whose body is
not there yet and reads again. For a one-row prediction that second system call
and the client's extra wake-up cost more than our whole handler; with both in one
write, tabserve served 1.26-1.55x the requests per second on one core and a bare
ASGI app 1.4-1.7x in four benchmark runs (`docs/benchmarks.md`).

`TabserveHttpProtocol` gives uvicorn's protocol a `CoalescingTransport`: writes are
held until the end of the event loop's current turn and then sent as one. Order
and flow control are kept:
- every other transport call (close, abort, pause/resume reading, write_eof, ...)
  first sends what is held;
- once `HOLD_BYTES` are held they go out at once, so a large or streamed body
  meets the socket's own buffer limits (and uvicorn's pause_writing) as before;
- what is held when the connection has gone is dropped, as uvicorn drops writes
  to a closed connection;
- a WebSocket upgrade gets the socket's own transport.

Each request's scope also carries `CLIENT_LEFT` (`service/scope_keys.py`), a
callable saying whether its client has gone: the batcher drops a queued request
whose client left before a model call takes it (`service/core/batching.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from tabserve.service.http_guard import GuardedHttpProtocol
from tabserve.service.scope_keys import CLIENT_LEFT

HOLD_BYTES = 16_384
"""Most bytes held back for the end of the loop turn; a write reaching it sends at once."""


class CoalescingTransport:
    """A transport whose writes within one event-loop turn reach the socket as one."""

    __slots__ = ("_held", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hold `data` for the end of this loop turn (or send now, past `HOLD_BYTES`)."""
        # A caller may reuse a bytearray once write returns; hold a copy of it.
        chunk = data if type(data) is bytes else bytes(data)
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(chunk)
        self._size += len(chunk)
        if self._size >= HOLD_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send what is held, as one write; drop it if the connection has gone."""
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Send what is held, then close (the socket's own transport flushes its buffer)."""
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        """Whether the socket's transport is closing or closed."""
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The socket's transport's extra info (peer name, socket, SSL context)."""
        return self._transport.get_extra_info(name, default)

    def unwrap(self) -> asyncio.Transport:
        """The socket's own transport, after sending what is held."""
        self.flush()
        return self._transport

    def __getattr__(self, name: str) -> Any:
        # Any other transport call (abort, pause_reading, write_eof, writelines,
        # set_write_buffer_limits, ...) comes after the writes held before it.
        self.flush()
        return getattr(self._transport, name)


class ClientPresence:
    """Called: whether a connection's client has gone (its connection was lost)."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        self.gone = False

    def __call__(self) -> bool:
        return self.gone


class TabserveHttpProtocol(GuardedHttpProtocol):
    """uvicorn's httptools HTTP/1.1 protocol, guarded, writing each answer in one piece."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.presence = ClientPresence()
        self.coalescing = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, self.coalescing))

    def connection_lost(self, exc: Exception | None) -> None:
        self.presence.gone = True
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # Every request of the connection (pipelined ones too) shares its presence:
        # the batcher asks it before a model call takes the request, with no task
        # per request. It refers to nothing, so the scope stays free of cycles.
        cast(dict[str, Any], self.scope)[CLIENT_LEFT] = self.presence

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes over the socket: give it the real transport.
        self.transport = self.coalescing.unwrap()
        super().handle_websocket_upgrade()
