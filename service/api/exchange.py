"""One HTTP request's exchange as the request middleware sees it: body limit, client, status.

Whatever route or lane answers, two outcomes are settled here, once:
- a body that streams past the limit (chunked: no declared length to refuse up
  front) is answered 413 in the error shape, whatever the handler made of the
  error (FastAPI's body parsing turns it into a 400; a plain-ASGI lane lets it
  escape, which would be a plain-text 500);
- a client that leaves before its answer starts (mid-upload, or while its
  request waits for a model) is counted as `499`, nginx's "client closed
  request": not a server error, so it stays out of the 5xx ratio that pages;
- a body that does not arrive in time is answered 408 by the HTTP protocol
  itself (`service/http_guard.py`), which says so in the scope: it is counted
  as 408, not as the disconnect the app saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from starlette.types import Message, Receive, Scope, Send

from tabserve.service.api.errors import error_response, internal_error_response
from tabserve.service.core.errors import TooLargeError
from tabserve.service.scope_keys import CLIENT_LEFT, GUARD_STATUS

CLIENT_CLOSED_REQUEST = 499
log = logging.getLogger("tabserve.errors")


class Exchange:
    """`receive` and `send` for the app, and the status the request is recorded with."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Sequence[tuple[bytes, bytes]],
        limit: int | None,
    ) -> None:
        """`headers` go on every answer; `limit` counts a streamed body (None: declared)."""
        self._scope = scope
        self._receive = receive
        self._send = send
        self._headers = headers
        self._limit = limit
        self._seen = 0
        self.status = 500
        self.started = False
        self.left_first = False
        """The client left before the answer started."""
        self.too_large: TooLargeError | None = None

    async def receive(self) -> Message:
        """The client's next message; raises TooLargeError once a body passes the limit."""
        message = await self._receive()
        kind = message["type"]
        if kind == "http.disconnect":
            self.left_first = self.left_first or not self.started
        elif kind == "http.request" and self._limit is not None:
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self.too_large = TooLargeError(
                    f"request body exceeds the limit of {self._limit} bytes"
                )
                raise self.too_large
        return message

    async def send(self, message: Message) -> None:
        """Pass the app's answer on with the headers; drop it if the body was too large."""
        if message["type"] == "http.response.start":
            if self.too_large is not None:
                return  # whatever the handler made of it, `settle` answers 413
            self.started = True
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), *self._headers]
        elif self.too_large is not None and not self.started:
            return
        await self._send(message)

    async def settle(self, failure: Exception | None) -> bool:
        """After the app: answer what it could not; False if `failure` should propagate."""
        if self.too_large is not None and not self.started:
            exc, self.too_large = self.too_large, None  # the 413 below is this request's answer
            refusal = error_response(413, exc.message, exc.code, exc.problems)
            await refusal(self._scope, self._receive, self.send)
            return True
        if failure is not None and self.client_closed:
            # Nobody is there to answer: what the handler raised once its client had
            # gone (a body cut short, say) is not a server error.
            log.debug("request ended after its client left: %r", failure)
            return True
        if failure is not None and not self.started:
            # A failure outside the app's own error handling (the middleware runs
            # outside FastAPI's): still the JSON 500, then it propagates to be logged.
            await internal_error_response()(self._scope, self._receive, self.send)
        return failure is None

    @property
    def client_closed(self) -> bool:
        """The client left before its answer started (seen in `receive`, or by the server)."""
        if not self.left_first and not self.started:
            check: Callable[[], bool] | None = self._scope.get(CLIENT_LEFT)
            self.left_first = callable(check) and check()
        return self.left_first

    def outcome(self) -> tuple[int, bool]:
        """The status for metrics and the access log, and whether its latency counts.

        The protocol's own answer if it gave one (a refusal: the client's slowness, so
        no latency), else 499 if the client left first, else the app's.
        """
        guard: int | None = self._scope.get(GUARD_STATUS)
        if guard is not None:
            return guard, False
        if self.started and not self.left_first:
            return self.status, True
        return (CLIENT_CLOSED_REQUEST if self.client_closed else self.status), True
