"""The gRPC server: a start/stop component of the app, on the app's own event loop.

`grpc.aio` runs on the loop that runs the app (uvloop under uvicorn and gunicorn's
workers), so RPCs call the same data plane, batchers and inference threads as HTTP
requests, with no second loop or thread. With several workers each binds the port
with SO_REUSEPORT and the kernel spreads connections across them; with one it is
off, so a port already taken fails the start. The server is built in `start`, so the gunicorn
master, which builds the app before forking, never creates gRPC state a fork would copy.

Stopping begins when SIGTERM arrives (the app's `draining` turns true), alongside
HTTP's drain, or at the app's shutdown, whichever comes first: health turns
NOT_SERVING, RPCs in flight get `grace_seconds` to finish and calls arriving
meanwhile get UNAVAILABLE; then the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from tabserve.service.auth.key_store import KeyStore
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.grpc import grpc_predict_v2_pb2_grpc as services
from tabserve.service.grpc.access import KeyInterceptor
from tabserve.service.grpc.health import INFERENCE_SERVICE, ReadinessHealth
from tabserve.service.grpc.metrics import GrpcMetrics
from tabserve.service.grpc.repository import RepositoryRpcs
from tabserve.service.grpc.servicer import InferenceServicer, Limits
from tabserve.service.grpc.settings import GrpcSettings
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb

log = logging.getLogger("tabserve.grpc")

HEALTH_SERVICE = "grpc.health.v1.Health"
DRAIN_POLL_SECONDS = 0.1
"""How soon after SIGTERM (which sets the app's `draining`) gRPC begins to stop."""


class GrpcServer:
    """Serves `inference.GRPCInferenceService`, health and reflection on `host:port`."""

    def __init__(
        self,
        settings: GrpcSettings,
        host: str,
        grace_seconds: float,
        servicer: InferenceServicer,
        health: ReadinessHealth,
        draining: Callable[[], bool],
        reuse_port: bool,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.settings = settings
        self.interceptors = interceptors
        """Wrapping every call (tracing's, when it is on)."""
        self.reuse_port = reuse_port
        """SO_REUSEPORT: on with several workers, which share the port; off with one, so
        a second server started on the same port fails instead of taking half its calls."""
        self.host = host
        self.grace_seconds = grace_seconds
        self.servicer = servicer
        self.health = health
        self.draining = draining
        self.port: int | None = None
        """The port bound (the setting's, or the one chosen for port 0 in tests)."""
        self._server: grpc.aio.Server | None = None
        self._watch: asyncio.Task[None] | None = None
        self._shutdown: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Bind and serve; a port that cannot be bound fails the start, naming it."""
        limit = self.settings.max_message_bytes
        server = grpc.aio.server(
            interceptors=self.interceptors,
            options=[
                ("grpc.so_reuseport", int(self.reuse_port)),
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
        )
        services.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            self.servicer, server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [INFERENCE_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME],
            server,
            pool=_descriptors(),
        )
        address = f"{_bracketed(self.host)}:{self.settings.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise RuntimeError(
                f"gRPC cannot listen on {address} ({exc}); choose another TABSERVE_GRPC_PORT, "
                "or 0 to turn gRPC off"
            ) from exc
        await server.start()
        await self.health.refresh()
        self.health.follow()
        self._server, self.port = server, port
        self._watch = asyncio.create_task(self._stop_when_draining())
        log.info("gRPC (Open Inference Protocol) listening on %s:%d", self.host, port)

    async def stop(self) -> None:
        """Stop serving (unless SIGTERM began it already) and wait until it has."""
        if self._watch is not None:
            self._watch.cancel()
        if self._server is not None:
            await self._stopped()

    async def _stop_when_draining(self) -> None:
        """Begin stopping as SIGTERM arrives (`draining`), while HTTP drains: so the two
        graces run side by side and the process still exits within one."""
        while not self.draining():
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        await self._stopped()

    async def _stopped(self) -> None:
        """The one shutdown, begun by whichever asks first; cancelling a waiter spares it."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._shut_down())
        await asyncio.shield(self._shutdown)

    async def _shut_down(self) -> None:
        """Health NOT_SERVING; RPCs in flight finish within the grace; new ones UNAVAILABLE.

        The servicer refuses new calls itself while the running ones finish, with the
        port still open: stopping gRPC's server at once would cancel calls that were
        arriving (CANCELLED, not UNAVAILABLE). Then the server stops, cutting off what
        the grace did not cover.
        """
        assert self._server is not None  # started: the watch and `stop` come after `start`
        started = time.monotonic()
        await self.health.shut_down()
        await self.servicer.refuse_new_calls(self.grace_seconds)
        await self._server.stop(max(0.0, self.grace_seconds - (time.monotonic() - started)))
        log.info("gRPC server stopped")


def grpc_server(
    settings: GrpcSettings,
    *,
    host: str,
    grace_seconds: float,
    dataplane: DataPlane,
    metrics: GrpcMetrics,
    limits: Limits,
    draining: Callable[[], bool],
    repository: RepositoryRpcs,
    reuse_port: bool,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    keys: KeyStore | None = None,
) -> GrpcServer:
    """The component, its servicers built over `dataplane`; with `keys`, every call but
    health, reflection and the liveness/readiness RPCs needs a key (`access.py`)."""
    servicer = InferenceServicer(
        dataplane, metrics, dataplane.metrics, limits, draining, repository
    )
    health = ReadinessHealth(dataplane.registry, draining)
    # The first is outermost: tracing (when on) sees the calls access control refuses.
    access = [KeyInterceptor(keys)] if keys is not None else []
    return GrpcServer(
        settings,
        host,
        grace_seconds,
        servicer,
        health,
        draining,
        reuse_port,
        [*interceptors, *access],
    )


def _descriptors() -> DescriptorPool:
    """The pool reflection describes: the inference messages' own (see tools/grpc_codegen.py),
    with the health and reflection services' files added, so all three are listed."""
    pool = pb.DESCRIPTOR.pool
    for file in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        try:
            pool.FindFileByName(file.name)
        except KeyError:
            pool.AddSerializedFile(file.serialized_pb)
    return pool


def _bracketed(host: str) -> str:
    """An IPv6 address in brackets, as gRPC's target syntax wants it."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
