"""The standard gRPC health service (`grpc.health.v1.Health`), following readiness.

Service names: "" and `inference.GRPCInferenceService` answer as `/v2/health/ready`
(SERVING while some model serves, none that served stopped, and the process is not
draining); each model's name answers whether its default version serves. An unknown
name is NOT_FOUND; a model's name once it is no longer loaded, SERVICE_UNKNOWN.
`Check` computes the answer when asked; `Watch` streams changes, which a background
refresh looks for every `REFRESH_SECONDS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from tabserve.service.core.registry import ModelRegistry

INFERENCE_SERVICE = "inference.GRPCInferenceService"
REFRESH_SECONDS = 1.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class ReadinessHealth(health.aio.HealthServicer):  # type: ignore[misc]
    """Health statuses read from the registry and the drain flag."""

    def __init__(self, registry: ModelRegistry, draining: Callable[[], bool]) -> None:
        super().__init__()
        self.registry = registry
        self.draining = draining
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Set every name's status from the registry as it is now."""
        draining = self.draining()
        server_ready = not draining and not self.registry.unready_reasons()
        statuses = {"": server_ready, INFERENCE_SERVICE: server_ready}
        for name in self.registry.names():
            statuses[name] = not draining and self.registry.get(name).ready
        for service, ready in statuses.items():
            await self.set(service, SERVING if ready else NOT_SERVING)
        for gone in set(self._server_status) - set(statuses):  # a model no longer loaded
            await self.set(gone, SERVICE_UNKNOWN)

    async def Check(  # noqa: N802  (the protocol's name)
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        """The status as of now, not of the last refresh."""
        await self.refresh()
        return await super().Check(request, context)

    def follow(self) -> None:
        """Refresh in the background, so watchers hear of changes."""
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(REFRESH_SECONDS)

    async def shut_down(self) -> None:
        """Every name NOT_SERVING from now on; the refresh stops."""
        if self._task is not None:
            self._task.cancel()
        await self.enter_graceful_shutdown()
