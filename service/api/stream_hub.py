"""The open prediction streams of one app: counted, and closed cleanly when the server drains.

Each model version's record checks, shared by its streams, live in its `lanes`.

The server (uvicorn) closes every WebSocket with 1012 the moment it starts shutting
down, dropping answers that were still being computed. So on SIGTERM the app asks
each stream to stop reading, answer what it has read and close with 1012 itself,
and only then hands the signal to the server (see `tabserve.service.app._drain_on_sigterm`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from prometheus_client import Counter

from tabserve.service.api.records_express import records_lane
from tabserve.service.api.stream_messages import RecordChecker
from tabserve.service.api.stream_metrics import StreamMetrics
from tabserve.service.core.served import LaneKey, ServedModel
from tabserve.service.web_config import WebConfig

log = logging.getLogger("tabserve.stream")
_CHECKER: LaneKey[RecordChecker] = LaneKey("stream_records")


class Drainable(Protocol):
    """What the hub needs of a stream."""

    def drain(self) -> None:
        """Stop reading; answer what was read; then close with 1012."""


class StreamHub:
    """Every open stream of one app, its metrics, and the drain on SIGTERM."""

    def __init__(self, metrics: StreamMetrics, grace_seconds: float) -> None:
        self.metrics = metrics
        self.grace_seconds = grace_seconds
        self.draining = False
        self._streams: set[Drainable] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._then: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._messages: dict[tuple[str, str], Counter] = {}
        self._rows: dict[tuple[str, int], Counter] = {}

    def opened(self, stream: Drainable) -> None:
        """A stream was accepted (called on the event loop)."""
        self._loop = asyncio.get_running_loop()
        self._streams.add(stream)
        self._empty.clear()
        self.metrics.connections.inc()

    def closed(self, stream: Drainable) -> None:
        """A stream ended, whatever the reason."""
        if stream in self._streams:
            self._streams.discard(stream)
            self.metrics.connections.dec()
        if not self._streams:
            self._empty.set()

    @property
    def open_streams(self) -> int:
        """Streams open now."""
        return len(self._streams)

    def checker(self, model: ServedModel, web: WebConfig) -> RecordChecker:
        """The record checks of `model`, built once per loaded version (not per connection).

        With `fast_path` on, the common records take the records express lane.
        """

        def build() -> RecordChecker:
            express = records_lane(model, web.max_string_length) if web.fast_path else None
            return RecordChecker(model, express)

        return model.lanes.get(_CHECKER, build)

    def count(self, model: str, code: str, version: int | None = None, rows: int = 0) -> None:
        """One reply sent: `ok` with its rows, or an error code."""
        key = (model, code)
        counter = self._messages.get(key)
        if counter is None:
            counter = self._messages[key] = self.metrics.messages.labels(*key)
        counter.inc()
        if rows and version is not None:
            row_key = (model, version)
            rows_counter = self._rows.get(row_key)
            if rows_counter is None:
                rows_counter = self._rows[row_key] = self.metrics.rows.labels(model, str(version))
            rows_counter.inc(rows)

    def drain_then(self, then: Callable[[], None]) -> None:
        """Close every stream cleanly, then call `then` (the server's own SIGTERM handler).

        Safe to call from a signal handler or another thread. With no stream open,
        `then` runs at once; a second call while streams drain stops waiting for them.
        """
        again = self.draining
        self.draining = True
        loop = self._loop
        if again or not self._streams or loop is None or loop.is_closed():
            self._call_then(then)
            return
        self._then = then
        loop.call_soon_threadsafe(self._start_drain)

    def _call_then(self, then: Callable[[], None]) -> None:
        pending, self._then = self._then, None
        (pending or then)()

    def _start_drain(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        streams = list(self._streams)
        log.info("draining %d stream(s) before shutting down", len(streams))
        for stream in streams:
            stream.drain()
        try:
            await asyncio.wait_for(self._empty.wait(), self.grace_seconds)
        except TimeoutError:
            log.warning(
                "%d stream(s) still open after %s s; the server closes them",
                len(self._streams),
                self.grace_seconds,
            )
        if self._then is not None:
            self._call_then(self._then)
