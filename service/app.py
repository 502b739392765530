"""The composition root: `create_app(settings)` wires the core to the web layer.

Nothing is built at import time. The lifespan loads the models (so a server that
accepts connections has them loaded and warmed up), adds the per-model record
routes, and on shutdown finishes running predictions before the threads stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from tabserve.service import __version__
from tabserve.service.access_log import AccessLog
from tabserve.service.api import (
    admin,
    catalog,
    drift,
    explain,
    feedback,
    health,
    predictions,
    rollout,
    stream,
    v1,
    v2,
)
from tabserve.service.api.access import install_access_control
from tabserve.service.api.docs import install_docs
from tabserve.service.api.errors import install_error_handlers
from tabserve.service.api.express import install_express_lanes
from tabserve.service.api.middleware import RequestContextMiddleware
from tabserve.service.api.refusals import RefusalCounter
from tabserve.service.api.stream_hub import StreamHub
from tabserve.service.api.stream_metrics import StreamMetrics
from tabserve.service.components import (
    AccessLogFlush,
    DirectoryPoller,
    InferenceThreads,
    Models,
    RecordRoutes,
    SigtermDrain,
    grpc_component,
    tracing_component,
)
from tabserve.service.grpc.metrics import GrpcMetrics
from tabserve.service.lifecycle import Component, running
from tabserve.service.logs import configure_logging
from tabserve.service.scope_keys import HTTP_REFUSALS
from tabserve.service.settings import Settings
from tabserve.service.sinks.component import SinkComponent
from tabserve.service.state import AppState
from tabserve.service.tracing.metrics import TracingMetrics

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

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


class ServiceAPI(FastAPI):
    """FastAPI with the app's own middleware outermost, outside FastAPI's wrappers.

    FastAPI puts its server-error, exception-telemetry and body-limit middleware
    around the user's. tabserve's middleware (request context, CORS, the express
    lanes) already answers every failure in the error shape (`api/exchange.py`), so
    it goes outside them, and a request the lanes answer skips those three layers
    (their cost per request was measured: `docs/benchmarks.md`, issue 19). What
    reaches FastAPI runs through its whole stack as before.
    """

    def __init__(self, *, telemetry: TelemetryConfig, **kwargs: Any) -> None:
        super().__init__(telemetry=telemetry, **kwargs)
        self._fastapi_telemetry = any(telemetry.get(part) for part in TELEMETRY_PARTS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An HTTP request goes straight to the middleware stack.

        `FastAPI.__call__` and `Starlette.__call__` do three things for it: set
        `root_path` when the app has one, put the app in the scope, and ask FastAPI's
        OpenTelemetry whether it is on (`NO_FASTAPI_TELEMETRY`: never). Done here in one
        frame instead of three (`docs/benchmarks.md`, issue 19). The lifespan and
        WebSockets, and every request while FastAPI's telemetry is on, go FastAPI's way.
        """
        stack = self.middleware_stack
        if scope["type"] != "http" or stack is None or self._fastapi_telemetry:
            await super().__call__(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        await stack(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        own, self.user_middleware = self.user_middleware, []
        try:
            app = super().build_middleware_stack()
        finally:
            self.user_middleware = own
        for middleware in reversed(own):
            app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        return app


def create_app(
    settings: Settings | None = None,
    *,
    preload: bool = False,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    """A new app with its own metrics, registry and inference pool.

    The lifespan starts the components listed here in order and stops them in
    reverse. It loads the models, unless `preload` loaded them here already (the
    gunicorn master does, so forked workers share them). With tracing on, spans go
    to `span_exporter` if given (tests), else over OTLP as the environment says.
    """
    settings = settings or Settings()
    configure_logging(settings.log_format, settings.log_level)
    state = AppState.build(settings)
    tracing_metrics = TracingMetrics(state.metrics.registry)  # registered whether on or not
    tracing = tracing_component(state, tracing_metrics, span_exporter)
    access = AccessLog(
        settings.log_format, trace_ids=tracing.trace_ids if tracing is not None else None
    )
    streams = StreamHub(StreamMetrics(state.metrics.registry), settings.shutdown_grace_seconds)
    models = Models(state)
    grpc_metrics = GrpcMetrics(state.metrics.registry)  # registered whether gRPC is on or not
    if preload:
        models.load()
        if state.predlog is not None:
            state.predlog.migrate()  # once, before the workers fork

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with running(components):
            # uvicorn hands this state to each connection's protocol too: the HTTP guard
            # counts the requests it answers itself through it (api/refusals.py).
            yield {HTTP_REFUSALS: RefusalCounter(state.metrics.http)}

    app = ServiceAPI(
        title="tabserve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=NO_FASTAPI_TELEMETRY,
    )
    app.state.tabserve = state
    app.state.streams = streams
    components: list[Component] = [
        *_optional(tracing),  # first, so stopped last: its spans are exported at the very end
        AccessLogFlush(access),
        models,
        InferenceThreads(state),
        state.rollouts,
        *_optional(state.predlog),
        RecordRoutes(app, state),
        *_optional(SinkComponent(state.sink, state.dataplane) if state.sink else None),
        *_optional(state.drift),
        *_optional(state.explanations),
        *_optional(grpc_component(app, state, grpc_metrics, tracing)),
        SigtermDrain(state, streams),
        *_optional(DirectoryPoller(app, state) if settings.poll_seconds > 0 else None),
    ]
    install_docs(app)
    install_error_handlers(app)
    # Every documented route exists whatever the settings: a feature that is off
    # answers 409 `feature_disabled`, naming the setting that turns it on.
    for router in ROUTERS:
        app.include_router(router)
    if settings.fast_path:  # first, so innermost: the middleware below wraps the lanes too
        install_express_lanes(app, state.dataplane, state.web)
    if state.keys is not None:  # outside the lanes, inside CORS (preflights carry no key)
        install_access_control(app, state.keys, settings.auth)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, **_cors_options(settings))
    # Added last, so outermost: preflight answers get request ids and security headers too.
    app.add_middleware(
        RequestContextMiddleware, metrics=state.metrics, web=state.web, access=access
    )
    if tracing is not None:
        from tabserve.service.tracing.http import TracingMiddleware  # OpenTelemetry: when on

        # Outermost: its span covers every answer, and is current while the line above
        # writes the access log, which takes the trace id from it.
        app.add_middleware(TracingMiddleware, tracing=tracing)
    return app


TELEMETRY_PARTS = ("tracing", "metrics", "logs")
NO_FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's own OpenTelemetry spans, metrics and logs: off, whatever tabserve's tracing says.

With it on FastAPI asks the global providers (reading the environment) on every
request: 10.4 µs of CPU against 0.19 µs off (`docs/benchmarks.md`). tabserve's tracing
lives in `service/tracing/` (`TABSERVE_TRACING_ENABLED`, docs/tracing.md): its SERVER
span covers every request, the express lanes' included, which FastAPI's never see, and
its child spans show where the time goes (the batcher queue, the model call).
"""

ROUTERS = (
    health.router,
    v2.router,
    v1.router,
    catalog.router,
    stream.router,
    admin.router,
    feedback.router,
    predictions.router,
    drift.router,
    explain.router,
    rollout.router,
)
"""Every route module's router, in the order the OpenAPI document lists them."""


def _optional(component: Component | None) -> list[Component]:
    """A feature's component when the feature is on, else nothing."""
    return [component] if component is not None else []


def _cors_options(settings: Settings) -> dict[str, Any]:
    """Browsers on `cors_origins` may call every route; no cookies are involved."""
    return {
        "allow_origins": settings.cors_origins,
        "allow_methods": ["GET", "POST"],
        "allow_headers": [
            "authorization",  # API keys (docs/access-control.md) and the admin token
            "content-type",
            "x-request-id",
            "inference-header-content-length",
            "x-request-timeout-ms",
        ],
        "expose_headers": ["x-request-id", "inference-header-content-length"],
    }


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory`: settings from `TABSERVE_*` variables."""
    return create_app(Settings())
