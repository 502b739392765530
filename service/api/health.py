"""Liveness and readiness probes (Open Inference Protocol health API) and `/metrics`.

The status code is the answer (200 true, 400 false), as the protocol says; the
body repeats it as JSON (`{"live": true}`, `{"ready": false, ...}`), the form
KServe's own server answers and its `InferenceRESTClient` reads, so clients of
either reading work.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from tabserve.service.api.deps import StateDep
from tabserve.service.api.schemas import error_responses
from tabserve.service.core.registry import ModelVersion

router = APIRouter(tags=["health"])


class LiveBody(BaseModel):
    """The liveness answer."""

    live: bool


class ReadyBody(BaseModel):
    """The server readiness answer."""

    ready: bool
    reasons: list[str] = Field(
        default_factory=list, description="Why the server is not ready (empty when it is)."
    )


class ModelReadyBody(BaseModel):
    """One model's (or version's) readiness answer."""

    name: str
    ready: bool


def _probe_responses(body: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"model": body, "description": "True (the status says it; the body repeats it)."},
        400: {"model": body, "description": "False (the protocol's 4xx for a false answer)."},
    }


MODEL_READY_RESPONSES = {**_probe_responses(ModelReadyBody), 404: error_responses(404)[404]}


def model_ready_answer(model: ModelVersion) -> JSONResponse:
    """200 `{"name", "ready": true}` when `model` can serve, else 400 with `ready: false`."""
    body = ModelReadyBody(name=model.name, ready=model.ready)
    return JSONResponse(body.model_dump(), status_code=200 if model.ready else 400)


@router.get(
    "/v2/health/live",
    summary="Server liveness: 200 while the process can answer",
    response_model=LiveBody,
    responses=_probe_responses(LiveBody),
)
async def live() -> JSONResponse:
    """Answers on the event loop, so a busy model never makes the process look dead."""
    return JSONResponse({"live": True})


@router.get(
    "/v2/health/ready",
    summary="Server readiness: 200 while some model serves and none that served stopped",
    response_model=ReadyBody,
    responses=_probe_responses(ReadyBody),
)
async def ready(state: StateDep) -> JSONResponse:
    """The Kubernetes readiness probe; a 400 names the reasons in its body.

    A model that never loaded does not unready the pod (it is reported in
    `GET /models` and the metrics instead). False from the moment SIGTERM
    arrives, while accepted requests drain.
    """
    reasons = state.registry.unready_reasons()
    if state.draining:
        reasons.append("shutting down: draining the requests already accepted")
    body = ReadyBody(ready=not reasons, reasons=reasons)
    return JSONResponse(body.model_dump(), status_code=400 if reasons else 200)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(state: StateDep) -> Response:
    """Every series the service exports (summed over worker processes when there are several)."""
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)
