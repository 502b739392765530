"""The composition root: `create_app(settings)` wires the core to the web layer.

Nothing is built at import time. The lifespan loads the models (so a server that
accepts connections has them loaded and warmed up), adds the per-model record
routes, and on shutdown finishes running predictions before the threads stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import FrameType, MappingProxyType
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from tabserve.service import __version__
from tabserve.service.access_log import AccessLog
from tabserve.service.api import (
    admin,
    catalog,
    drift,
    feedback,
    health,
    predictions,
    stream,
    v1,
    v2,
)
from tabserve.service.api.docs import install_docs
from tabserve.service.api.errors import install_error_handlers
from tabserve.service.api.fastpath import INFER_TARGET, InferEndpoint, infer_target
from tabserve.service.api.middleware import RequestContextMiddleware
from tabserve.service.api.records import install_record_routes
from tabserve.service.api.stream_hub import StreamHub
from tabserve.service.core import heap
from tabserve.service.core.loading import load_all
from tabserve.service.logs import configure_logging
from tabserve.service.settings import Settings
from tabserve.service.sinks import CloudEventSink, SinkConfig
from tabserve.service.state import AppState

log = logging.getLogger("tabserve.models")

DESCRIPTION = """
Predictions from versioned scikit-learn models over three APIs:

* **records**: `POST /models/{name}/predict` with rows keyed by feature name
  (each model's route below shows its real features and an example);
* **Open Inference Protocol** (KServe V2, what Triton, KServe and MLServer
  clients speak), with Triton's binary tensor extension;
* **KServe V1**: `POST /v1/models/{name}:predict`;
* **streams** (WebSocket, so not listed below): `/models/{name}/stream` and
  `/models/{name}/versions/{v}/stream` take records as JSON messages and answer
  each in order, with the same body as `POST /models/{name}/predict`
  (see docs/streaming.md).

Errors always have the shape `{"error": str, "code": str, "details": [...]}`,
where each detail names the field, the value given and what was expected.
"""


class ServingApp(FastAPI):
    """FastAPI, except that V2 infer and record requests go to fast paths when set.

    `fast_records` maps each record route's exact path to its endpoint (rebuilt
    with the routes); `wrap_fast` wraps an endpoint in the request bookkeeping and
    `wrap_cors` wraps what a fast path answers itself in CORS (when configured).
    """

    fast_infer: ASGIApp | None = None
    fast_records: Mapping[str, ASGIApp] = MappingProxyType({})
    wrap_fast: Callable[[ASGIApp], ASGIApp] | None = None
    wrap_cors: Callable[[ASGIApp], ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch V2 infer and records to the fast paths; everything else through FastAPI."""
        if self.fast_infer is not None:
            target = infer_target(scope)
            if target is not None:
                scope["app"] = self
                scope[INFER_TARGET] = target
                await self.fast_infer(scope, receive, send)
                return
            if scope["type"] == "http" and scope["method"] == "POST":
                records = self.fast_records.get(scope["path"])
                if records is not None:
                    scope["app"] = self
                    await records(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def general(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own handling, for what a fast path leaves."""
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, preload: bool = False) -> FastAPI:
    """A new app with its own metrics, registry and inference pool.

    The lifespan loads the models, unless `preload` loaded them here already (the
    gunicorn master does, so forked workers share them).
    """
    settings = settings or Settings()
    configure_logging(settings)
    state = AppState.build(settings)
    access = AccessLog(settings)
    streams = StreamHub(state.metrics, settings.shutdown_grace_seconds)
    sink_config = SinkConfig.from_settings(settings)
    sink = CloudEventSink(sink_config, state.metrics) if sink_config is not None else None
    if preload:
        load_all(settings, state.metrics, state.registry)
        state.loaded = True
        if state.predlog is not None:
            state.predlog.migrate()  # once, before the workers fork
        heap.settle()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pool.start()
        if not state.loaded:
            await anyio.to_thread.run_sync(load_all, settings, state.metrics, state.registry)
            state.loaded = True
            heap.settle()
        if state.predlog is not None:
            await anyio.to_thread.run_sync(state.predlog.start, state.dataplane)
        install_record_routes(app, state.registry)
        if sink is not None:
            sink.start()  # here, not in create_app: a forked worker needs its own thread
            state.dataplane.request_listeners.append(sink.offer)
        restore = _drain_on_sigterm(state, streams)
        poller = None
        if settings.poll_seconds > 0:
            poller = asyncio.create_task(_follow_directory(app, state))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
            restore()
            access.flush()
            if state.predlog is not None:
                await anyio.to_thread.run_sync(state.predlog.close)
            state.pool.close()
            if sink is not None:
                state.dataplane.request_listeners.remove(sink.offer)
                await anyio.to_thread.run_sync(sink.close)
            for model in state.registry.all():
                model.runtime.unload()

    app = ServingApp(
        title="tabserve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.tabserve = state
    app.state.streams = streams
    if settings.fast_path:

        def wrap_fast(endpoint: ASGIApp) -> ASGIApp:
            return RequestContextMiddleware(endpoint, state.metrics, settings, access)

        def wrap_cors(endpoint: ASGIApp) -> ASGIApp:
            return _cors(endpoint, settings) if settings.cors_origins else endpoint

        app.wrap_fast, app.wrap_cors = wrap_fast, wrap_cors
        app.fast_infer = wrap_fast(wrap_cors(InferEndpoint(state.dataplane, settings)))
    install_docs(app)
    install_error_handlers(app)
    for router in (health.router, v2.router, v1.router, catalog.router, stream.router):
        app.include_router(router)
    if settings.admin_token is not None:
        app.include_router(admin.router)
    if state.predlog is not None:
        app.include_router(feedback.router)
        app.include_router(predictions.router)
    if state.drift is not None:
        app.include_router(drift.router)  # with its lifespan: the flush and snapshot timer
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, **_cors_options(settings))
    # Added last, so outermost: preflight answers get request ids and security headers too.
    app.add_middleware(
        RequestContextMiddleware, metrics=state.metrics, settings=settings, access=access
    )
    return app


async def _follow_directory(app: FastAPI, state: AppState) -> None:
    """Load new versions as they appear under the models directory."""
    while True:
        await asyncio.sleep(state.settings.poll_seconds)
        try:
            if await state.repository.follow_directory():
                install_record_routes(app, state.registry)
        except Exception:
            log.exception("polling %s failed; trying again", state.settings.models_dir)


def _cors_options(settings: Settings) -> dict[str, Any]:
    """Browsers on `cors_origins` may call every route; no cookies are involved."""
    return {
        "allow_origins": settings.cors_origins,
        "allow_methods": ["GET", "POST"],
        "allow_headers": [
            "content-type",
            "x-request-id",
            "inference-header-content-length",
            "x-request-timeout-ms",
        ],
        "expose_headers": ["x-request-id", "inference-header-content-length"],
    }


def _cors(app: ASGIApp, settings: Settings) -> ASGIApp:
    return CORSMiddleware(app, **_cors_options(settings))


def _drain_on_sigterm(state: AppState, streams: StreamHub) -> Callable[[], None]:
    """Turn readiness false as soon as SIGTERM arrives, then let the server drain.

    The server's own handler (uvicorn's) is kept and still called, once open
    WebSocket streams have answered what they read and closed (uvicorn would cut
    them off). Only the main thread can set handlers; elsewhere (tests) this does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        state.draining = True
        if callable(previous):
            streams.drain_then(lambda: previous(signum, frame))

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory`: settings from `TABSERVE_*` variables."""
    return create_app(Settings())
