"""`inference.GRPCInferenceService`: the Open Inference Protocol's RPCs over the core.

Each RPC is a translation, as an HTTP route is: protobuf in (`protocol.v2_protobuf`),
the same calls on the data plane as `POST /v2/models/{m}/infer` makes (version
parsing, tensors to a validated batch, outputs and metadata from `protocol.v2_model`,
`DataPlane.predict` on the model's batcher), protobuf out. So a gRPC prediction shares
model calls with HTTP ones, and the prediction log, drift and the prediction metrics
see it as they see any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from tabserve.service import __version__
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.errors import Problem, TooLargeError
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.core.served import ServedModel
from tabserve.service.grpc import grpc_predict_v2_pb2_grpc as services
from tabserve.service.grpc.metadata import metadata_value
from tabserve.service.grpc.metrics import GrpcMetrics
from tabserve.service.grpc.repository import RepositoryRpcs
from tabserve.service.grpc.status import CODE_METADATA, StoppingError, refusal
from tabserve.service.protocol import prediction_outputs
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb
from tabserve.service.protocol.v2_model import (
    SERVER_NAME,
    batch_of,
    chosen_outputs,
    model_info,
    parse_version,
)
from tabserve.service.protocol.v2_protobuf import decode_infer_request, encode_infer_response

Reply = TypeVar("Reply")
REQUEST_ID_METADATA = "x-request-id"
ROLLOUT_KEY_METADATA = "x-rollout-key"
_MAX_REQUEST_ID = 200


class Limits:
    """What the servicer needs of the settings: deadlines and string limits, as HTTP's."""

    def __init__(self, default_timeout_ms: int, max_timeout_ms: int, max_string: int) -> None:
        self.default_timeout = default_timeout_ms / 1000
        self.max_timeout = max_timeout_ms / 1000
        self.max_string = max_string


class InferenceServicer(services.GRPCInferenceServiceServicer):
    """The six RPCs of KServe's `grpc_predict_v2.proto` and Triton's three repository RPCs."""

    def __init__(
        self,
        dataplane: DataPlane,
        metrics: GrpcMetrics,
        service_metrics: ServiceMetrics,
        limits: Limits,
        draining: Callable[[], bool],
        repository: RepositoryRpcs,
    ) -> None:
        self.dataplane = dataplane
        self.repository = repository
        self.metrics = metrics
        self.service_metrics = service_metrics
        self.limits = limits
        self.draining = draining
        self.stopping = False
        """Set when the server stops: every new call is refused with UNAVAILABLE."""
        self._running = 0
        self._idle = asyncio.Event()

    async def refuse_new_calls(self, grace_seconds: float) -> None:
        """Refuse new calls from now on; return once the running ones have answered,
        or after `grace_seconds`."""
        self.stopping = True
        if self._running == 0:
            return
        self._idle.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_seconds)

    async def ServerLive(  # noqa: N802  (the protocol's names)
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerLiveResponse:
        """True while the process answers (on the event loop, like `/v2/health/live`)."""
        return await self._answer("ServerLive", context, "", _now(pb.ServerLiveResponse(live=True)))

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerReadyResponse:
        """As `/v2/health/ready`: some model serves, none that served stopped, not draining."""
        ready = not self.dataplane.registry.unready_reasons() and not self.draining()
        return await self._answer(
            "ServerReady", context, "", _now(pb.ServerReadyResponse(ready=ready))
        )

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelReadyResponse:
        """Whether the version (default: the default version) can serve; NOT_FOUND if unknown."""

        async def ready() -> pb.ModelReadyResponse:
            version = _version(request.name, request.version)
            entry = self.dataplane.registry.get(request.name, version)
            return pb.ModelReadyResponse(ready=entry.ready)

        return await self._answer("ModelReady", context, request.name, ready())

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerMetadataResponse:
        """Name and version; no extensions (Triton's binary one is HTTP's)."""
        answer = pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__)
        return await self._answer("ServerMetadata", context, "", _now(answer))

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelMetadataResponse:
        """`GET /v2/models/{m}[/versions/{v}]`'s inputs, outputs and versions."""

        async def metadata() -> pb.ModelMetadataResponse:
            model = self._served(request.name, request.version)
            versions = [str(m.version) for m in self.dataplane.registry.versions(model.name)]
            info = model_info(model, versions)
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=info.name,
                versions=info.versions,
                platform=info.platform,
                inputs=[
                    tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.inputs
                ],
                outputs=[
                    tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.outputs
                ],
            )

        return await self._answer("ModelMetadata", context, request.name, metadata())

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        """Predict, as `POST /v2/models/{m}[/versions/{v}]/infer` does."""
        return await self._answer(
            "ModelInfer", context, request.model_name, self._infer(request, context)
        )

    async def RepositoryIndex(  # noqa: N802
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RepositoryIndexResponse:
        """`POST /v2/repository/index`: versions on disk and loaded (admin token)."""

        async def index() -> pb.RepositoryIndexResponse:
            self.repository.authorize(context)
            return self.repository.index(request)

        return await self._answer("RepositoryIndex", context, "", index())

    async def RepositoryModelLoad(  # noqa: N802
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RepositoryModelLoadResponse:
        """`POST /v2/repository/models/{m}/load` (admin token)."""

        async def load() -> pb.RepositoryModelLoadResponse:
            self.repository.authorize(context)
            return await self.repository.load(request)

        return await self._answer("RepositoryModelLoad", context, request.model_name, load())

    async def RepositoryModelUnload(  # noqa: N802
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RepositoryModelUnloadResponse:
        """`POST /v2/repository/models/{m}/unload` (admin token; a version is required)."""

        async def unload() -> pb.RepositoryModelUnloadResponse:
            self.repository.authorize(context)
            return self.repository.unload(request)

        return await self._answer("RepositoryModelUnload", context, request.model_name, unload())

    async def _infer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        name = request.model_name
        model = self.dataplane.route(
            name, _version(name, request.model_version), _sticky_key, context
        )
        parsed, raw = decode_infer_request(request)
        for tensor in parsed.inputs:
            if tensor.datatype == "BYTES":
                self._check_strings(tensor.name, tensor.data.reshape(-1).tolist())
        batch = batch_of(model.schema, parsed.inputs)
        wanted = chosen_outputs(parsed, model)
        done = asyncio.Event()
        context.add_done_callback(lambda _: done.set())
        prediction = await self.dataplane.predict(
            model,
            batch,
            deadline=self._deadline(context),
            abandoned=done.wait,
            left=context.cancelled,
            request_id=_request_id(context),
        )
        return encode_infer_response(
            model_name=model.name,
            model_version=str(model.version),
            request_id=parsed.id,
            outputs=prediction_outputs(prediction, [name for name, _ in wanted]),
            raw=raw or any(binary for _, binary in wanted),
        )

    def _served(self, name: str, version: str) -> ServedModel:
        return self.dataplane.model(name, _version(name, version))

    def _deadline(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        """The client's gRPC deadline, capped as `X-Request-Timeout-Ms` is; else the default."""
        remaining = context.time_remaining()
        timeout = self.limits.default_timeout
        if remaining is not None:
            timeout = min(remaining, self.limits.max_timeout)
        return asyncio.get_running_loop().time() + timeout

    def _check_strings(self, name: str, texts: list[str]) -> None:
        """HTTP's BYTES limit (`api/limits.check_strings`), naming the longest element."""
        limit = self.limits.max_string
        if not texts:
            return
        at = max(range(len(texts)), key=lambda i: len(texts[i]))
        length = len(texts[at])
        if length > limit:
            raise TooLargeError(
                f"input {name!r} element {at} is {length} characters long; "
                f"the limit is {limit} (TABSERVE_MAX_STRING_LENGTH)",
                [
                    Problem(
                        field=f"input {name!r}",
                        row=at,
                        value=f"a string of {length} characters",
                        expected=f"BYTES elements of at most {limit} characters",
                    )
                ],
            )

    async def _answer(
        self,
        rpc: str,
        context: grpc.aio.ServicerContext[Any, Any],
        model: str,
        work: Awaitable[Reply],
    ) -> Reply:
        """`work`'s reply, counted and timed; a failure aborts with its status instead."""
        metrics = self.metrics
        started = time.perf_counter()
        metrics.in_flight.inc()
        self._running += 1
        status = "OK"
        try:
            if self.stopping:
                if inspect.iscoroutine(work):
                    work.close()  # never started: no "never awaited" warning
                raise StoppingError()
            return await work
        except Exception as exc:
            answer = refusal(exc, rpc)
            status = answer.status.name
            if answer.reason is not None:
                known = model if model in self.dataplane.registry.names() else ""
                self.service_metrics.validation.errors.labels(known, answer.reason).inc()
            context.set_trailing_metadata(((CODE_METADATA, answer.code),))
            await context.abort(answer.status, answer.message)
            raise AssertionError("context.abort always raises") from exc
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()
            metrics.in_flight.dec()
            metrics.requests.labels(rpc, status).inc()
            metrics.latency.labels(rpc).observe(time.perf_counter() - started)


async def _now(reply: Reply) -> Reply:
    return reply


def _version(name: str, version: str) -> int | None:
    """The request's version field: empty for the default version."""
    return parse_version(name, version) if version else None


def _sticky_key(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The caller's `x-rollout-key` metadata (as HTTP's `X-Rollout-Key` header), if any."""
    return metadata_value(context.invocation_metadata(), ROLLOUT_KEY_METADATA)


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's `x-request-id` metadata (as HTTP's header), else a new id."""
    given = metadata_value(context.invocation_metadata(), REQUEST_ID_METADATA)
    return given[:_MAX_REQUEST_ID] if given else secrets.token_hex(16)
