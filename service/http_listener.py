"""The listening socket's last moments: accept through the drain window, then close cleanly.

A connection the kernel has completed but the server has not yet accepted sits in
the listen backlog. uvicorn closes the listener as soon as it stops, and closing
a listening socket makes the kernel reset every connection still in its backlog,
though the client may already have sent its request: on SIGTERM under load,
clients met resets (measured in `docs/benchmarks.md`, "Hardening probe"). And
while the pod is being removed from its Service, clients still open connections
to it for a moment; a closed port refuses them.

`DrainingServer` is uvicorn's server with a gentler end:

1. For `drain_window_seconds` after the signal it keeps accepting; every
   connection, old or new, is answered with `Connection: close`
   (`GuardedHttpProtocol` sees `DrainingState.draining`).
2. At the end of the window it accepts, in one step with no await, whatever the
   kernel has queued, serves those connections like the others, and closes the
   listener: from then on the port refuses new connections (ECONNREFUSED, which
   a client may retry anywhere, as nothing was sent) instead of resetting them.
3. Then uvicorn's own shutdown: requests in flight finish within the grace period.

What is left: a connection whose handshake completes in the microseconds between
that last accept and the close is still reset by the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn

from tabserve.service.http_guard import DrainingState

POLL_SECONDS = 0.05
"""How often the drain window checks whether a second signal asked to stop at once."""

log = logging.getLogger("tabserve.http")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, accepting through the drain window and closing its listener cleanly."""

    def __init__(self, config: uvicorn.Config, drain_window_seconds: float) -> None:
        super().__init__(config)
        self.drain_state = DrainingState()
        self.server_state = self.drain_state  # what uvicorn hands every connection
        self.drain_window_seconds = drain_window_seconds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain for the window, take what the kernel queued, then uvicorn's shutdown."""
        self.drain_state.draining = True
        for connection in list(self.drain_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.drain_window_seconds
        while loop.time() < ends and not self.force_exit:
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, ends - loop.time())))
        listeners = [sock for server in self.servers for sock in server.sockets or ()]
        queued = accept_queued(listeners)
        for server in self.servers:
            server.close()  # in the same step as the last accept: nothing lands between
        if queued:
            log.info("took %d queued connection(s) at the end of the drain window", len(queued))
            await serve_accepted(queued, self._new_protocol, loop)
        await super().shutdown(sockets)

    def _new_protocol(self) -> asyncio.Protocol:
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol


def accept_queued(listeners: Sequence[Any]) -> list[socket.socket]:
    """Accept, without blocking, every connection the kernel has queued on `listeners`.

    `listeners` are the server's sockets (uvloop's or asyncio's wrappers): a
    duplicate of each descriptor is read, then closed, leaving the server's own.
    """
    accepted: list[socket.socket] = []
    for listener in listeners:
        with socket.socket(fileno=os.dup(listener.fileno())) as own:
            own.setblocking(False)
            while True:
                try:
                    connection, _ = own.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # the listener is failing (EMFILE, say): nothing more to take
                connection.setblocking(False)
                accepted.append(connection)
    return accepted


async def serve_accepted(
    connections: Sequence[socket.socket],
    protocol: Callable[[], asyncio.Protocol],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Serve each accepted connection with a new `protocol()`, as the server would have."""
    wrapped = await asyncio.gather(
        *(loop.connect_accepted_socket(protocol, sock=connection) for connection in connections),
        return_exceptions=True,
    )
    for connection, result in zip(connections, wrapped, strict=True):
        if isinstance(result, BaseException):
            connection.close()  # it went before it could be served: nothing to answer
