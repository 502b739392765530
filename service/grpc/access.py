"""Access control over gRPC: an interceptor that wants `authorization: Bearer <key>`.

The same keys and scopes as HTTP (`service/auth`): each RPC needs the scope its HTTP
route needs; a call without a valid key gets UNAUTHENTICATED, a key lacking the scope
PERMISSION_DENIED, with the HTTP body's message and the `tabserve-error-code`
trailing metadata (`unauthenticated`, `forbidden`). Liveness and readiness, the
health service and reflection stay open, as HTTP's probes do. A method not listed
needs `admin`, so a new RPC is closed until it is listed (a test checks every
method of the service is).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from tabserve.service.auth.errors import ForbiddenError, UnauthenticatedError
from tabserve.service.auth.key_store import KeyStore
from tabserve.service.auth.scopes import Scope
from tabserve.service.grpc.metadata import metadata_value
from tabserve.service.grpc.status import CODE_METADATA

INFERENCE = "/inference.GRPCInferenceService/"
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
METHOD_SCOPES: dict[str, Scope | None] = {
    "ServerLive": None,
    "ServerReady": None,
    "ModelReady": Scope.READ,
    "ServerMetadata": Scope.READ,
    "ModelMetadata": Scope.READ,
    "ModelInfer": Scope.PREDICT,
    "RepositoryIndex": Scope.ADMIN,
    "RepositoryModelLoad": Scope.ADMIN,
    "RepositoryModelUnload": Scope.ADMIN,
}
"""Each `inference.GRPCInferenceService` RPC's scope (None: open)."""
_EXPECTED = "`authorization: Bearer <key>` call metadata"
Handler: TypeAlias = Any
"""`grpc.RpcMethodHandler` (grpcio ships no type stubs)."""


def scope_of(method: str) -> Scope | None:
    """The scope a full method name (`/inference.GRPCInferenceService/ModelInfer`) needs."""
    if method.startswith(OPEN_SERVICES):
        return None
    if method.startswith(INFERENCE):
        return METHOD_SCOPES.get(method.removeprefix(INFERENCE), Scope.ADMIN)
    return Scope.ADMIN


class KeyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks each call's key against its method's scope before the servicer sees it."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """The method's own handler, or one that refuses the call."""
        handler = await continuation(handler_call_details)
        needed = scope_of(handler_call_details.method)
        if needed is None or handler is None:
            return handler
        try:
            given = metadata_value(handler_call_details.invocation_metadata, "authorization")
            self.keys.authorize(given, needed, "grpc")
        except UnauthenticatedError as exc:
            message = f"{exc.message}; send {_EXPECTED}"
            return _refusing(handler, grpc.StatusCode.UNAUTHENTICATED, message, exc.code)
        except ForbiddenError as exc:
            message = f"{exc.message}: {handler_call_details.method}"
            return _refusing(handler, grpc.StatusCode.PERMISSION_DENIED, message, exc.code)
        return handler


def _refusing(handler: Handler, status: grpc.StatusCode, message: str, code: str) -> Handler:
    """A handler of the same kind as `handler` that ends the call with `status`."""
    trailing = ((CODE_METADATA, code),)

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(status, message, trailing_metadata=trailing)

    async def refuse_stream(
        _request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        await context.abort(status, message, trailing_metadata=trailing)
        yield  # pragma: no cover  (abort raises; the yield makes this a stream)

    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **codec)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **codec)
    return grpc.unary_unary_rpc_method_handler(refuse, **codec)
