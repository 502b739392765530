"""The payload sink as a start/stop component of the app."""

from __future__ import annotations

import anyio

from tabserve.service.core.dataplane import DataPlane
from tabserve.service.sinks.cloudevents import CloudEventSink


class SinkComponent:
    """Sends every answered request while the app serves; drains at shutdown."""

    def __init__(self, sink: CloudEventSink, dataplane: DataPlane) -> None:
        self.sink = sink
        self.dataplane = dataplane

    async def start(self) -> None:
        """Start the sender (here, not at build time: a forked worker needs its own thread)."""
        self.sink.start()
        self.dataplane.request_listeners.append(self.sink.offer)

    async def stop(self) -> None:
        """Stop listening, then send what is queued within the drain period."""
        self.dataplane.request_listeners.remove(self.sink.offer)
        await anyio.to_thread.run_sync(self.sink.close)
