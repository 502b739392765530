"""The model repository RPCs (Triton's extension): index, load, unload, as `/v2/repository`.

They do what the HTTP admin routes do (`api/admin.py`), on the same `ModelRepository`,
behind the same admin token: `authorization: Bearer <token>` call metadata (gRPC's
form of the header). With no token configured nobody has access (FAILED_PRECONDITION,
naming `TABSERVE_ADMIN_TOKEN`, as HTTP's 409); no or a malformed bearer token is
UNAUTHENTICATED, a wrong one PERMISSION_DENIED. A version is chosen with the
`version` parameter (int64); unloading needs one, as `POST .../unload` does. Changing
the default version has no RPC: it is HTTP only (`PUT .../default`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

from tabserve.service.core.errors import (
    FeatureDisabledError,
    InvalidInputError,
    ModelNotFoundError,
    Problem,
)
from tabserve.service.core.repository import ModelRepository
from tabserve.service.grpc.metadata import metadata_value
from tabserve.service.grpc.status import (
    LoadFailedError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb

AUTHORIZATION = "authorization"


class RepositoryRpcs:
    """Index, load and unload over `repository`; `changed()` runs after a load or unload."""

    def __init__(
        self,
        repository: ModelRepository,
        token: str | None,
        changed: Callable[[], None],
        *,
        keys_checked: bool = False,
    ) -> None:
        """`keys_checked`: access control is on, and its interceptor (`access.py`) lets
        through only calls whose key holds the `admin` scope (the admin token is one)."""
        self.repository = repository
        self.token = token
        self.changed = changed
        self.keys_checked = keys_checked

    def authorize(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Raise unless the call carries the admin token (or passed access control)."""
        if self.keys_checked:
            return
        if self.token is None:
            raise FeatureDisabledError(
                "the model repository API", "TABSERVE_ADMIN_TOKEN", "a secret bearer token", None
            )
        given = metadata_value(context.invocation_metadata(), AUTHORIZATION)
        if given is None or not given.startswith("Bearer "):
            raise UnauthenticatedError(
                "repository RPCs need `authorization: Bearer <token>` call metadata"
            )
        token = given.removeprefix("Bearer ").strip().encode()
        if not hmac.compare_digest(token, self.token.encode()):
            raise PermissionDeniedError("wrong admin token")

    def index(self, request: pb.RepositoryIndexRequest) -> pb.RepositoryIndexResponse:
        """Every version on disk or loaded (only the ready ones with `ready`)."""
        _one_repository(request.repository_name)
        entry = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                entry(name=e.name, version=str(e.version), state=e.state, reason=e.error or "")
                for e in self.repository.index()
                if not request.ready or e.state == "ready"
            ]
        )

    async def load(self, request: pb.RepositoryModelLoadRequest) -> pb.RepositoryModelLoadResponse:
        """Load one version (`version`), or every version on disk not loaded yet."""
        _one_repository(request.repository_name)
        version = _version(request.parameters)
        loaded = await self.repository.load(_name(request.model_name), version)
        self.changed()
        failed = [m for m in loaded if not m.ready]
        if failed:
            raise LoadFailedError(
                "; ".join(
                    f"model {m.name!r} version {m.version} failed to load: {m.error}"
                    for m in failed
                )
                + " (a version that was serving still serves)"
            )
        return pb.RepositoryModelLoadResponse()

    def unload(self, request: pb.RepositoryModelUnloadRequest) -> pb.RepositoryModelUnloadResponse:
        """Stop serving one version; calls already holding it finish on it."""
        _one_repository(request.repository_name)
        version = _version(request.parameters)
        if version is None:
            raise InvalidInputError.of(
                "malformed",
                [Problem("parameters.version", "the version to unload (int64_param)", None)],
            )
        self.repository.unload(_name(request.model_name), version)
        self.changed()
        return pb.RepositoryModelUnloadResponse()


def _one_repository(name: str) -> None:
    if name:
        raise ModelNotFoundError(
            f"no repository named {name!r}; tabserve serves one (leave repository_name empty)"
        )


def _name(model: str) -> str:
    if not model:
        raise InvalidInputError.of("malformed", [Problem("model_name", "a model's name", model)])
    return model


def _version(parameters: Any) -> int | None:
    """The `version` parameter (a positive int64_param), None when absent."""
    # tritonclient sends unload_dependents with every unload; tabserve models have none.
    unknown = sorted(set(parameters) - {"version", "unload_dependents"})
    if unknown:
        raise InvalidInputError.of(
            "malformed",
            [
                Problem(f"parameters.{name}", "only 'version' (an int64_param)", name)
                for name in unknown
            ],
        )
    if "version" not in parameters:
        return None
    value = parameters["version"]
    if value.WhichOneof("parameter_choice") != "int64_param" or value.int64_param < 1:
        raise InvalidInputError.of(
            "malformed",
            [Problem("parameters.version", "a positive int64_param", str(value).strip())],
        )
    number: int = value.int64_param
    return number
