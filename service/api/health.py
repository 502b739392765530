"""Liveness and readiness probes (Open Inference Protocol health API) and `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from tabserve.service.api.deps import StateDep

router = APIRouter(tags=["health"])

_PROBE_RESPONSES: dict[int | str, dict[str, str]] = {
    200: {"description": "True: the body is empty, the status says it."},
    400: {"description": "False (the protocol's 4xx for a false health answer)."},
}


@router.get(
    "/v2/health/live",
    summary="Server liveness: 200 while the process can answer",
    responses=_PROBE_RESPONSES,
    response_class=Response,
)
async def live() -> Response:
    """Answers on the event loop, so a busy model never makes the process look dead."""
    return Response(status_code=200)


@router.get(
    "/v2/health/ready",
    summary="Server readiness: 200 once every model is loaded and warmed up",
    responses=_PROBE_RESPONSES,
    response_class=Response,
)
async def ready(state: StateDep) -> Response:
    """The Kubernetes readiness probe: 200 when every model's default version can serve.

    False from the moment SIGTERM arrives, while accepted requests drain.
    """
    ready = state.registry.all_ready() and not state.draining
    return Response(status_code=200 if ready else 400)


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
