"""Bounds on what one HTTP connection may cost, and a drain that drops no request.

uvicorn's httptools protocol puts no limit on the request line and headers (a
96 MiB header cost a worker 9 s of CPU; 200 MiB grew it to 517 MB) and no limit on
how long a request may take to arrive (slowloris: a connection that sends a byte
now and then is held forever). `GuardedHttpProtocol` adds both:

- **Head size**: a request line plus headers over `max_header_bytes` gets `431`
  in the service's JSON error shape and the connection is closed. An incomplete
  head is measured as it arrives, so memory stays bounded by the limit plus one
  network read; a complete one is measured exactly.
- **Arrival time**: a request must arrive whole (head and body) within
  `read_timeout_seconds` of its first byte, or of the connection's opening; past
  it the client gets `408` and the connection is closed. Idle keep-alive
  connections stay governed by uvicorn's keep-alive timeout.

- **Malformed HTTP**: what httptools cannot parse gets `400` in the same JSON error
  shape (uvicorn's own answer is plain text without the security headers).

Refusals close gently: the answer is written, the sending side shut, and what the
client still sends is read and discarded for `LINGER_SECONDS`, so its kernel does
not reset the connection before it reads the answer.

Refusals are counted in `tabserve_http_requests_total` like every answer. One the
app never saw (the head was too large, too slow or malformed) is counted with
route `<unrouted>` through the callable the app's lifespan hands over
(`HTTP_REFUSALS`); one whose body was too slow, after the app had started on it,
is counted by the app's middleware under its route, with the status this protocol
put in the scope (`GUARD_STATUS`).

On shutdown (SIGTERM, or gunicorn retiring a worker on SIGHUP) uvicorn closes idle
keep-alive connections at once, so a request a client sends at that moment meets a
reset. Here they stay open for `drain_window_seconds`: a request arriving on one
is answered with `Connection: close`, then the connection closes; those still idle
at the end of the window are closed then. The listener stays open for that window
too (`service/http_listener.py`): a connection accepted while the server drains gets
the same treatment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from tabserve.service.scope_keys import GUARD_STATUS, HTTP_REFUSALS

LINGER_SECONDS = 2.0
"""After a refusal, how long what the client still sends is read and discarded."""

UNPARSED_METHOD = "<unparsed>"
"""The method label of a refused request whose request line never arrived."""

log = logging.getLogger("tabserve.http")

# The headers every API answer carries (service/api/middleware.py, API_HEADERS);
# tests/service/test_http_guard.py checks the two agree.
SECURITY_HEADERS = (
    b"x-content-type-options: nosniff\r\n"
    b"x-frame-options: DENY\r\n"
    b"referrer-policy: no-referrer\r\n"
    b"cache-control: no-store\r\n"
    b"content-security-policy: default-src 'none'; frame-ancestors 'none'; "
    b"base-uri 'none'; form-action 'none'\r\n"
)


@dataclass
class RefusalLog:
    """At most one warning per `interval` about refused connections, with a count."""

    interval: float = 10.0
    _last: float = float("-inf")
    _since: dict[str, int] = field(default_factory=dict)

    def note(self, reason: str, client: tuple[str, int] | None) -> None:
        """Count a refusal; log it (and the others since the last line) when due."""
        self._since[reason] = self._since.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        counts = ", ".join(f"{n} {r}" for r, n in sorted(self._since.items()))
        where = f"{client[0]}:{client[1]}" if client else "a client"
        log.warning(
            "closed the connection of %s: %s (refused since last said: %s)", where, reason, counts
        )
        self._last = now
        self._since.clear()


@dataclass(frozen=True)
class ConnectionLimits:
    """What `GuardedHttpProtocol` enforces (from `Settings`)."""

    max_header_bytes: int = 64 * 1024
    read_timeout_seconds: float = 30.0
    drain_window_seconds: float = 2.0
    refusals: RefusalLog = field(default_factory=RefusalLog, compare=False)


class DrainingState(ServerState):
    """uvicorn's state shared by a server's connections, and whether the server drains."""

    def __init__(self) -> None:
        super().__init__()
        self.draining = False


def error_answer(status: int, message: str, code: str, field_name: str, expected: str) -> bytes:
    """A whole HTTP/1.1 answer in the service's error shape that closes the connection."""
    body = orjson.dumps(
        {
            "error": message,
            "code": code,
            "details": [
                {
                    "field": field_name,
                    "index": None,
                    "row": None,
                    "value": None,
                    "expected": expected,
                }
            ],
        }
    )
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            SECURITY_HEADERS,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded heads, arrival deadlines and a gentle drain."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    @classmethod
    def configured(cls, limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
        """This protocol class enforcing `limits` (uvicorn builds one instance per connection)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # of an incomplete head, counted as it arrives
        self._head_bound = 0  # bytes of the reads the current head may span (at least its size)
        self._read_size = 0  # of the read being parsed
        self._in_head = True  # not between a complete head and its message's end
        self._phase = 0  # heads completed plus messages completed, to see a read cross one
        self._receiving = False  # a message has begun and not yet ended
        self._arrival: asyncio.TimerHandle | None = None  # at most one, re-armed lazily
        self._arriving_since: float | None = None  # loop time the arrival began; None: none
        self._refused = False
        self._draining = False

    # --- connection events ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_arrival()  # a connection that never sends is a request that never arrives
        state = self.server_state
        if isinstance(state, DrainingState) and state.draining:
            self.shutdown()  # accepted while the server drains: answered, then closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_arrival_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop what the client still sends
        if self._arriving_since is None and self._in_head:
            # Even stray bytes before a request count against its time. (`_arm_arrival`
            # inline: this runs for every request of a keep-alive connection.)
            self._arriving_since = self.loop.time()
            if self._arrival is None:
                self._arm_arrival()
        if self._in_head:
            self._head_bound += len(data)
        self._read_size = len(data)
        phase = self._phase
        super().data_received(data)
        if self._refused or self._phase != phase:
            # A head completed (or a message ended) within this read: what is left of the
            # read belongs to a body or to the next head. Count from the next read on,
            # which bounds an incomplete head by the limit plus one read.
            self._head_bytes = 0
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse_head(self._head_bytes)

    def handle_websocket_upgrade(self) -> None:
        self._stop_arrival_timer()  # the WebSocket protocol owns the connection from here
        super().handle_websocket_upgrade()

    # --- parser callbacks ---

    def on_message_begin(self) -> None:
        if self._refused:
            return
        self._receiving = True
        if self._arriving_since is None:
            self._arm_arrival()
        super().on_message_begin()

    # on_url and on_header are uvicorn's own: after a refusal they only gather a
    # pipelined head that on_headers_complete then drops, so they need no guard.

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._phase += 1
        # The reads this head spans bound its size: only a head that might pass the
        # limit is measured exactly (the common one costs a comparison).
        if self._head_bound > self.limits.max_header_bytes:
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self.limits.max_header_bytes:
                self._refuse_head(size)
                return
        self._in_head = False
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed: the server is stopping

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._phase += 1
        self._in_head = True
        self._head_bound = self._read_size  # the next head may begin within this read
        self._receiving = False
        self._arriving_since = None  # a pending timer finds nothing arriving and lapses
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """Answer what httptools could not parse in the error shape, and close gently."""
        answer = error_answer(
            400,
            f"the request is not valid HTTP/1.1: {msg}",
            "invalid_http",
            "request",
            "an HTTP/1.1 request line, headers and body (RFC 9112)",
        )
        self._refuse("invalid_http", 400, answer)

    # --- shutdown ---

    def shutdown(self) -> None:
        """Keep idle keep-alive connections for the drain window instead of closing them now."""
        if self._draining:
            return  # the server asks again once its listener is closed
        self._draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        self.loop.call_later(self.limits.drain_window_seconds, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self.transport.is_closing() or self._receiving:
            return  # a request is arriving: it gets its answer with Connection: close
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    # --- refusals ---

    # The arrival deadline costs no timer per request: one timer per connection is
    # armed when none is pending, and when it fires it re-arms itself for whatever the
    # request arriving then has left (a keep-alive connection's requests come and go
    # in between, each only noting when it began).

    def _arm_arrival(self) -> None:
        self._arriving_since = self.loop.time()
        if self._arrival is None:
            self._arrival = self.loop.call_later(
                self.limits.read_timeout_seconds, self._arrival_due
            )

    def _stop_arrival_timer(self) -> None:
        self._arriving_since = None
        if self._arrival is not None:
            self._arrival.cancel()
            self._arrival = None

    def _arrival_due(self) -> None:
        self._arrival = None
        since = self._arriving_since
        if since is None:
            return  # nothing is arriving: the next request arms a timer of its own
        left = since + self.limits.read_timeout_seconds - self.loop.time()
        if left > 0:
            self._arrival = self.loop.call_later(left, self._arrival_due)
            return
        self._too_slow()

    def _too_slow(self) -> None:
        self._arriving_since = None
        if self.transport.is_closing() or self._refused:
            return
        seconds = self.limits.read_timeout_seconds
        answer = error_answer(
            408,
            f"the request did not arrive whole within {seconds:g} s",
            "request_timeout",
            "request",
            f"the request line, headers and body within {seconds:g} s",
        )
        self._refuse("request_timeout", 408, answer)

    def _refuse_head(self, size: int) -> None:
        limit = self.limits.max_header_bytes
        answer = error_answer(
            431,
            f"the request line and headers take more than {limit} bytes ({size} so far)",
            "header_too_large",
            "headers",
            f"a request line and headers of at most {limit} bytes",
        )
        self._refuse("header_too_large", 431, answer)

    def _refuse(self, reason: str, status: int, answer: bytes) -> None:
        """Answer (when the connection is ours to answer on), count it, and close gently."""
        self._refused = True
        self._stop_arrival_timer()
        self.limits.refusals.note(reason, self.client)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_head or cycle.response_started:
                # An earlier pipelined answer is still due, or this one is half written:
                # nothing can go on the wire before it, so the connection just closes.
                self.transport.close()
                return
            # This request's app must stop waiting for a body that will not come, and
            # write nothing: the refusal is its answer, which its middleware records.
            cast(dict[str, Any], cycle.scope)[GUARD_STATUS] = status
            cycle.disconnected = True
            cycle.message_event.set()
        else:
            self._count_unrouted(status)
        self.flow.resume_reading()  # lingering reads what the client still sends
        self.transport.write(answer)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _count_unrouted(self, status: int) -> None:
        """Count a refusal the app never saw, through the app's lifespan state."""
        count = self.app_state.get(HTTP_REFUSALS)
        if count is None:
            return  # an app without the counter (not tabserve's): nothing to count in
        method = UNPARSED_METHOD
        url: bytes = getattr(self, "url", b"")  # set when the first request begins
        if self._receiving and url:
            # The parser read the method before it began on the URL.
            method = self.parser.get_method().decode("ascii", "replace")
        count(method, status)
