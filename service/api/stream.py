"""`WS /models/{m}/stream`: predictions over one WebSocket, pipelined, answered in order.

Each message's rows join the same batching path as HTTP requests
(`DataPlane.predict`), so messages in flight at once share model calls and the
request listeners see every answer under its request id. A bounded window per
connection gives back-pressure: with `TABSERVE_STREAM_WINDOW` messages read and not yet
answered, the server stops reading the socket until an answer goes out.
`docs/streaming.md` describes the protocol and its close codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tabserve.service.api.deadlines import TIMEOUT_HEADER, deadline_for
from tabserve.service.api.deps import StateDep, StreamsDep
from tabserve.service.api.limits import json_limits
from tabserve.service.api.middleware import request_id_of
from tabserve.service.api.origins import origin_allowed
from tabserve.service.api.rollout_key import rollout_key
from tabserve.service.api.stream_hub import StreamHub
from tabserve.service.api.stream_messages import (
    Inbound,
    RecordChecker,
    error_reply,
    read_message,
    rejection_reason,
)
from tabserve.service.api.v2 import parse_version
from tabserve.service.core.errors import ModelNotFoundError, ModelNotReadyError, ServiceError
from tabserve.service.core.served import ServedModel
from tabserve.service.core.validation import ValidatedBatch
from tabserve.service.state import AppState
from tabserve.service.web_config import WebConfig

log = logging.getLogger("tabserve.stream")
router = APIRouter()

# Close codes (RFC 6455 section 7.4; 4000-4999 are the application's own).
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_NOT_FOUND = 4404
CLOSE_NOT_READY = 4503
SHUTTING_DOWN = "server is shutting down; reconnect"
_REASON_BYTES = 123  # a close frame's reason is at most 123 bytes of UTF-8


@router.websocket("/models/{model}/stream")
async def stream_default(
    websocket: WebSocket, model: str, state: StateDep, hub: StreamsDep
) -> None:
    """Stream predictions from the model's default version."""
    await _serve(websocket, state, hub, model, None)


@router.websocket("/models/{model}/versions/{version}/stream")
async def stream_version(
    websocket: WebSocket, model: str, version: str, state: StateDep, hub: StreamsDep
) -> None:
    """Stream predictions from one version of the model."""
    await _serve(websocket, state, hub, model, version)


async def _serve(
    websocket: WebSocket, state: AppState, hub: StreamHub, name: str, version: str | None
) -> None:
    connection_id = request_id_of(websocket.scope)
    websocket.scope.setdefault("state", {})["model"] = name
    if not _origin_allowed(websocket, state.web):
        await websocket.close(CLOSE_POLICY)  # before accepting: the handshake gets 403
        return
    await websocket.accept()
    try:
        if state.draining or hub.draining:
            await _close(websocket, CLOSE_RESTART, SHUTTING_DOWN)
            return
        number = None if version is None else parse_version(name, version)
        model = state.dataplane.model(name, number)
        timeout = deadline_for(websocket.headers.get(TIMEOUT_HEADER), state.web.deadlines)
        timeout -= asyncio.get_running_loop().time()
    except ServiceError as exc:
        # A close, not a reply: every reply answers one message, and none was read.
        await _close(websocket, _refusal_code(exc), exc.message)
        return
    stream = Stream(websocket, state, hub, model, number, connection_id, timeout)
    hub.opened(stream)
    try:
        await stream.run()
    finally:
        hub.closed(stream)


def _origin_allowed(websocket: WebSocket, web: WebConfig) -> bool:
    """Whether a browser page may open this stream: its own origin, or one in `cors_origins`.

    Browsers apply no CORS to WebSockets: any page may open one and read the
    answers, so the handshake's Origin is checked here as CORS would for HTTP.
    Clients other than browsers send no Origin.
    """
    headers = websocket.headers
    return origin_allowed(headers.get("origin"), headers.get("host"), web.cors_origins)


def _refusal_code(exc: ServiceError) -> int:
    if isinstance(exc, ModelNotFoundError):
        return CLOSE_NOT_FOUND
    if isinstance(exc, ModelNotReadyError):
        return CLOSE_NOT_READY
    return CLOSE_POLICY


def _failure(task: asyncio.Task[None]) -> BaseException | None:
    """What a finished task raised, other than cancellation or the client leaving."""
    if not task.done() or task.cancelled():
        return None
    failure = task.exception()
    return None if isinstance(failure, WebSocketDisconnect) else failure


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    text = reason.encode()[:_REASON_BYTES].decode("utf-8", "ignore")
    with contextlib.suppress(RuntimeError, OSError):  # the client may be gone already
        await websocket.close(code, text)


class Stream:
    """One connection: a reader that starts predictions and a writer that answers in order."""

    def __init__(
        self,
        websocket: WebSocket,
        state: AppState,
        hub: StreamHub,
        model: ServedModel,
        version: int | None,
        connection_id: str,
        timeout: float,
    ) -> None:
        self.websocket = websocket
        self.dataplane = state.dataplane
        self.web = state.web
        self.metrics = state.metrics
        self.hub = hub
        self.name = model.name
        self.version = version
        self.connection_id = connection_id
        self.timeout = timeout
        self.limits = json_limits(state.web)
        self.window = asyncio.Semaphore(state.web.streams.window)
        self.replies: deque[asyncio.Future[bytes] | None] = deque()
        self.ready = asyncio.Event()
        self.gone = asyncio.Event()
        self.sequence = 0
        self.reader: asyncio.Task[None] | None = None
        self.drained = False

    def drain(self) -> None:
        """Stop reading; the writer answers what was read, then the stream closes with 1012."""
        self.drained = True
        if self.reader is not None:
            self.reader.cancel()

    async def run(self) -> None:
        """Serve the connection until the client leaves, or the server drains it."""
        self.reader = reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self._write())
        if self.drained:
            reader.cancel()
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reader.cancelled() and not writer.done():
                # Draining: everything read gets its answer before the close.
                self._push(None)
                await asyncio.wait({writer})
                if _failure(writer) is None and not writer.cancelled():
                    await _close(self.websocket, CLOSE_RESTART, SHUTTING_DOWN)
            failure = _failure(reader) or _failure(writer)
            if failure is not None:
                log.error("stream %s failed", self.connection_id, exc_info=failure)
                await _close(self.websocket, CLOSE_INTERNAL, "internal error")
        finally:
            # Not awaited: a task awaited while the server cancels this one would be
            # cancelled again, and the second cancellation would escape the server's scope.
            self.gone.set()  # drops this stream's requests still queued for a model
            reader.cancel()
            writer.cancel()
            for reply in self.replies:
                if reply is not None:
                    reply.cancel()

    # --- reading ------------------------------------------------------------------------

    async def _read(self) -> None:
        receive = self.websocket.receive
        window = self.window
        while True:
            await window.acquire()  # full window: stop reading until an answer goes out
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            self._push(self._start(raw))

    def _push(self, reply: asyncio.Future[bytes] | None) -> None:
        """Queue a reply for the writer; None: nothing follows."""
        self.replies.append(reply)
        self.ready.set()

    def _start(self, raw: str | bytes) -> asyncio.Future[bytes]:
        """Check the message now; start its prediction; the future holds the encoded reply."""
        self.sequence += 1
        fallback = f"{self.connection_id}-{self.sequence}"
        request_id, request = read_message(
            raw, fallback, self.web.streams.max_message_bytes, self.limits
        )
        if isinstance(request, Inbound):
            try:
                # a split gives every message of one `X-Rollout-Key` the same version
                model = self.dataplane.route(
                    self.name, self.version, rollout_key, self.websocket.scope
                )
                checker = self.hub.checker(model, self.web)
                batch = checker.check(request.records)
            except ServiceError as exc:
                return self._refused(request_id, exc)
            return asyncio.ensure_future(self._predict(request_id, checker, batch))
        return self._refused(request_id, request)

    def _refused(self, request_id: str, exc: ServiceError) -> asyncio.Future[bytes]:
        reason = rejection_reason(exc)
        if reason is not None:
            self.metrics.validation.errors.labels(self.name, reason).inc()
        self.hub.count(self.name, exc.code)
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        done.set_result(error_reply(request_id, exc))
        return done

    async def _predict(
        self, request_id: str, checker: RecordChecker, batch: ValidatedBatch
    ) -> bytes:
        loop = asyncio.get_running_loop()
        try:
            prediction = await self.dataplane.predict(
                checker.model,
                batch,
                deadline=loop.time() + self.timeout,
                abandoned=self.gone.wait,
                request_id=request_id,
            )
        except ServiceError as exc:
            self.hub.count(self.name, exc.code)
            return error_reply(request_id, exc)
        except Exception:
            log.exception("prediction failed on stream %s", self.connection_id)
            self.hub.count(self.name, "internal")
            failure = ServiceError("internal error; the server log has the details")
            return error_reply(request_id, failure)
        self.hub.count(self.name, "ok", checker.model.version, batch.rows)
        return checker.answer(request_id, prediction)

    # --- writing ------------------------------------------------------------------------

    async def _write(self) -> None:
        send = self.websocket.send
        replies = self.replies
        while True:
            while not replies:
                self.ready.clear()
                await self.ready.wait()
            reply = replies[0]
            if reply is None:
                return
            data = await reply
            replies.popleft()
            await send({"type": "websocket.send", "text": data.decode()})
            self.window.release()
