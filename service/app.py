"""The composition root: `create_app(settings)` wires the core to the web layer.

Nothing is built at import time. The lifespan loads the models (so a server that
accepts connections has them loaded and warmed up), adds the per-model record
routes, and on shutdown finishes running predictions before the threads stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service import __version__
from service.api import catalog, health, v1, v2
from service.api.docs import install_docs
from service.api.errors import install_error_handlers
from service.api.fastpath import InferEndpoint, infer_target
from service.api.middleware import RequestContextMiddleware
from service.api.records import install_record_routes
from service.core.loading import load_all
from service.logs import configure_logging
from service.settings import Settings
from service.state import AppState

DESCRIPTION = """
Predictions from versioned scikit-learn models over three APIs:

* **records**: `POST /models/{name}/predict` with rows keyed by feature name
  (each model's route below shows its real features and an example);
* **Open Inference Protocol** (KServe V2, what Triton, KServe and MLServer
  clients speak), with Triton's binary tensor extension;
* **KServe V1**: `POST /v1/models/{name}:predict`.

Errors always have the shape `{"error": str, "code": str, "details": [...]}`,
where each detail names the field, the value given and what was expected.
"""


class ServingApp(FastAPI):
    """FastAPI, except that V2 infer requests go straight to `fast_infer` when set."""

    fast_infer: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch V2 infer to the fast path; everything else through FastAPI."""
        if self.fast_infer is not None and infer_target(scope) is not None:
            scope["app"] = self
            await self.fast_infer(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app with its own metrics, registry and inference pool."""
    settings = settings or Settings()
    configure_logging(settings)
    state = AppState.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pool.start()
        await anyio.to_thread.run_sync(load_all, settings, state.metrics, state.registry)
        install_record_routes(app, state.registry)
        try:
            yield
        finally:
            state.pool.close()
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
    if settings.fast_path:
        endpoint = InferEndpoint(state.dataplane, settings)
        app.fast_infer = RequestContextMiddleware(endpoint, state.metrics, settings)
    install_docs(app)
    install_error_handlers(app)
    for router in (health.router, v2.router, v1.router, catalog.router):
        app.include_router(router)
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics, settings=settings)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory`: settings from `TABSERVE_*` variables."""
    return create_app(Settings())
