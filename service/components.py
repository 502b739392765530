"""The app's own start/stop components: models, inference threads, routes, drain, polling.

Features bring their own (`PredictionLog`, `DriftMonitor`, `SinkComponent`); these
are the parts every app has. `create_app` lists them all in one place.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI

from tabserve.service.access_log import AccessLog
from tabserve.service.api.records import install_record_routes
from tabserve.service.api.stream_hub import StreamHub
from tabserve.service.core import heap
from tabserve.service.core.loading import load_all
from tabserve.service.grpc.metrics import GrpcMetrics
from tabserve.service.grpc.repository import RepositoryRpcs
from tabserve.service.grpc.server import GrpcServer, grpc_server
from tabserve.service.grpc.servicer import Limits
from tabserve.service.state import AppState
from tabserve.service.tracing.metrics import TracingMetrics

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from tabserve.service.tracing.component import Tracing

log = logging.getLogger("tabserve.models")


class Models:
    """Loads every version under the models directory (unless preloaded); unloads at the end."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def load(self) -> None:
        """Load and warm up every complete version, then settle the heap (blocking)."""
        state = self.state
        load_all(state.repository.config, state.dataplane)
        state.loaded = True
        heap.settle()

    async def start(self) -> None:
        """Load in a thread, so the loop stays free; a server that accepts has its models."""
        if not self.state.loaded:
            await anyio.to_thread.run_sync(self.load)

    async def stop(self) -> None:
        """Release every runtime."""
        for model in self.state.registry.all():
            if model.served is not None:
                model.served.runtime.unload()


class InferenceThreads:
    """The inference pool's threads: created at start, joined (calls finished) at stop."""

    def __init__(self, state: AppState) -> None:
        self.pool = state.pool

    async def start(self) -> None:
        """Create the threads."""
        self.pool.start()

    async def stop(self) -> None:
        """Let running model calls finish, then stop the threads."""
        self.pool.close()


class RecordRoutes:
    """The per-model record routes, added once the models are known."""

    def __init__(self, app: FastAPI, state: AppState) -> None:
        self.app = app
        self.state = state

    async def start(self) -> None:
        """Add a route per loaded model (and version)."""
        install_record_routes(self.app, self.state.registry)

    async def stop(self) -> None:
        """Nothing to release: the routes go with the app."""


class DirectoryPoller:
    """Loads new versions as they appear under the models directory (`poll_seconds`)."""

    def __init__(self, app: FastAPI, state: AppState) -> None:
        self.app = app
        self.state = state
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start polling in the background."""
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()

    async def _follow(self) -> None:
        state = self.state
        while True:
            await asyncio.sleep(state.settings.poll_seconds)
            try:
                if await state.repository.follow_directory():
                    install_record_routes(self.app, state.registry)
            except Exception:
                log.exception("polling %s failed; trying again", state.settings.models_dir)


class SigtermDrain:
    """Turn readiness false as soon as SIGTERM arrives, then let the server drain.

    The server's own handler (uvicorn's) is kept and still called, once open
    WebSocket streams have answered what they read and closed (uvicorn would cut
    them off). Only the main thread can set handlers; elsewhere (tests) this does
    nothing.
    """

    def __init__(self, state: AppState, streams: StreamHub) -> None:
        self.state = state
        self.streams = streams
        self._previous: Callable[[int, FrameType | None], object] | int | None = None
        self._installed = False

    async def start(self) -> None:
        """Install the handler, keeping the server's."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = self._previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            self.state.draining = True
            if callable(previous):
                self.streams.drain_then(lambda: previous(signum, frame))

        signal.signal(signal.SIGTERM, on_sigterm)
        self._installed = True

    async def stop(self) -> None:
        """Put the server's handler back."""
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


class AccessLogFlush:
    """Writes the access log's buffered lines at shutdown."""

    def __init__(self, access: AccessLog) -> None:
        self.access = access

    async def start(self) -> None:
        """Nothing to start: lines are buffered as requests end."""

    async def stop(self) -> None:
        """Write what is buffered."""
        self.access.flush()


def grpc_component(
    app: FastAPI, state: AppState, metrics: GrpcMetrics, tracing: Tracing | None = None
) -> GrpcServer | None:
    """The gRPC server over the app's data plane, or None when `TABSERVE_GRPC_PORT` is 0.

    A version loaded or unloaded over gRPC gets (or loses) its record routes, as over HTTP;
    with `tracing`, its calls get spans as HTTP requests do.
    """
    settings = state.settings
    if settings.grpc.port == 0:
        return None
    web = state.web
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    repository = RepositoryRpcs(
        state.repository,
        token,
        lambda: install_record_routes(app, state.registry),
        keys_checked=state.keys is not None,
    )
    return grpc_server(
        settings.grpc,
        host=settings.host,
        grace_seconds=settings.shutdown_grace_seconds,
        dataplane=state.dataplane,
        metrics=metrics,
        limits=Limits(web.deadlines.default_ms, web.deadlines.max_ms, web.max_string_length),
        draining=lambda: state.draining,
        repository=repository,
        reuse_port=settings.workers > 1,
        interceptors=tracing.grpc_interceptors() if tracing is not None else (),
        keys=state.keys,
    )


def tracing_component(
    state: AppState, metrics: TracingMetrics, exporter: SpanExporter | None
) -> Tracing | None:
    """Tracing, when `TABSERVE_TRACING_ENABLED`; None (and no OpenTelemetry imported) when off.

    `exporter` replaces the OTLP exporter (tests pass the SDK's in-memory one).
    """
    if not state.settings.tracing.enabled:
        return None
    try:
        # Imported only when on: OpenTelemetry is an extra a server without tracing lacks.
        from tabserve.service.tracing.component import Tracing
    except ImportError as exc:
        raise RuntimeError(
            f"TABSERVE_TRACING_ENABLED is true but OpenTelemetry is not installed ({exc}); "
            "install it with: pip install 'tabserve[tracing]'"
        ) from exc
    return Tracing(state.dataplane, metrics, exporter)
