"""Model repository API: what is on disk and loaded; load, unload, set the default.

Paths follow Triton's model repository extension. Every path is documented and
answers; a request needs `Authorization: Bearer <token>` (401 without it, 403 with a
wrong one). With no admin token configured nobody has access: every path answers
409 `feature_disabled`, naming `TABSERVE_ADMIN_TOKEN`.
Changes apply to the process that receives them: with several workers, prefer
the directory poller (`TABSERVE_POLL_SECONDS`), which every worker runs.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.exceptions import HTTPException
from pydantic import BaseModel, Field, StrictInt

from tabserve.service.api.access import ACCESS_KEY
from tabserve.service.api.deps import StateDep
from tabserve.service.api.json_bodies import JsonBodyRoute
from tabserve.service.api.records import install_record_routes
from tabserve.service.api.schemas import error_responses
from tabserve.service.auth.key_store import Key
from tabserve.service.auth.scopes import Scope
from tabserve.service.core.errors import FeatureDisabledError
from tabserve.service.core.registry import ModelVersion


async def require_admin(
    request: Request, state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """409 with no admin token configured; 401 without a bearer token, 403 with the wrong one.

    With access control on, the access middleware has already required a key with
    the `admin` scope (`api/access.py`), and the admin token is one such key.
    """
    key: Key | None = request.scope.get("state", {}).get(ACCESS_KEY)
    if key is not None and Scope.ADMIN in key.scopes:
        return
    token = state.settings.admin_token
    if token is None:
        raise FeatureDisabledError(
            "the model repository API", "TABSERVE_ADMIN_TOKEN", "a secret bearer token", None
        )
    if authorization is None or not authorization.startswith("Bearer "):
        raise HTTPException(
            401,
            "admin routes need an Authorization: Bearer <token> header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = authorization.removeprefix("Bearer ").strip().encode()
    if not hmac.compare_digest(given, token.get_secret_value().encode()):
        raise HTTPException(403, "wrong admin token")


router = APIRouter(
    prefix="/v2/repository",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(401, 403, 409),
    route_class=JsonBodyRoute,
)


class IndexItem(BaseModel):
    """One version on disk or loaded."""

    name: str
    version: str
    state: str = Field(description="ready, loading, failed, or unloaded (on disk only).")
    reason: str | None = Field(default=None, description="Why it failed to load.")
    on_disk: bool
    default: bool = Field(description="Whether requests naming no version get this one.")


class VersionBody(BaseModel):
    """Which version; omit it to load every version on disk not loaded yet."""

    # Strict: JSON `true` or "2" is not a version (lax mode would read `true` as 1).
    version: StrictInt | None = Field(default=None, ge=1)


class DefaultBody(BaseModel):
    """The version to answer by default; null goes back to the highest version."""

    version: StrictInt | None = Field(ge=1)


class VersionState(BaseModel):
    """A version's state after the change."""

    name: str
    version: str
    state: str
    reason: str | None = None


def _state(model: ModelVersion) -> VersionState:
    return VersionState(
        name=model.name, version=str(model.version), state=model.state.value, reason=model.error
    )


@router.post("/index", summary="Versions on disk and loaded", response_model=list[IndexItem])
async def index(state: StateDep) -> list[IndexItem]:
    """Every version found on disk or loaded, with its state and which one is the default."""
    return [
        IndexItem(
            name=e.name,
            version=str(e.version),
            state=e.state,
            reason=e.error,
            on_disk=e.on_disk,
            default=e.default,
        )
        for e in state.repository.index()
    ]


@router.post(
    "/models/{model}/load",
    summary="Load a version (verified and warmed up before it takes traffic)",
    response_model=list[VersionState],
    responses=error_responses(400, 404),
)
async def load(
    model: str, request: Request, state: StateDep, body: VersionBody | None = None
) -> list[VersionState]:
    """A version that fails to load is reported and never replaces one that is serving."""
    loaded = await state.repository.load(model, body.version if body else None)
    install_record_routes(request.app, state.registry)
    return [_state(m) for m in loaded]


@router.post(
    "/models/{model}/unload",
    summary="Stop serving a version",
    response_model=VersionState,
    responses=error_responses(400, 404, 422),
)
async def unload(model: str, body: VersionBody, request: Request, state: StateDep) -> VersionState:
    """Requests already running on the version finish on it."""
    if body.version is None:
        raise HTTPException(422, "unload needs a version")
    removed = state.repository.unload(model, body.version)
    install_record_routes(request.app, state.registry)
    return VersionState(name=model, version=str(removed.version), state="unloaded")


@router.put(
    "/models/{model}/default",
    summary="Choose the default version",
    response_model=VersionState,
    responses=error_responses(400, 404),
)
async def set_default(
    model: str, body: DefaultBody, request: Request, state: StateDep
) -> VersionState:
    """Requests that name no version get this one from now on."""
    chosen = state.repository.set_default(model, body.version)
    install_record_routes(request.app, state.registry)
    return _state(chosen)
