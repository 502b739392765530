"""Champion/challenger rollouts over HTTP: start, read, end, promote (admin token).

`PUT /models/{model}/rollout` starts (or changes) one: the challenger version, the
mode (`split`: it answers `share` of the requests that name no version; `shadow`: it
predicts copies of the champion's requests in the background and answers none).
The champion is the model's default version. `DELETE` ends it, the champion keeps
serving; `POST .../promote` makes the challenger the default version. As with the
default-version pin, a change applies to the process that receives it and lasts
until it restarts (docs/rollouts.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from tabserve.service.api.admin import require_admin
from tabserve.service.api.deps import StateDep
from tabserve.service.api.json_bodies import JsonBodyRoute
from tabserve.service.api.records import install_record_routes
from tabserve.service.api.schemas import error_responses
from tabserve.service.core.rollout.plan import Mode, Rollout

router = APIRouter(
    prefix="/models/{model}/rollout",
    tags=["rollout"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(401, 403, 404, 409),
    route_class=JsonBodyRoute,
)


class RolloutBody(BaseModel):
    """The challenger and how it takes part."""

    model_config = ConfigDict(extra="forbid")

    challenger: StrictInt = Field(ge=1, description="The version challenging the default one.")
    mode: Literal["split", "shadow"] = Field(
        description="`split`: answers `share` of the requests naming no version; `shadow`: "
        "predicts copies of the champion's requests in the background, answers none."
    )
    share: StrictFloat | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Split only: the fraction of requests naming no version the challenger "
        "answers (a request with an `X-Rollout-Key` header always gets the same arm).",
    )


class RolloutState(BaseModel):
    """A rollout: its champion and challenger, how it routes, since when."""

    model: str
    champion: int = Field(description="The default version, pinned while the rollout runs.")
    challenger: int
    mode: Literal["split", "shadow"]
    share: float = Field(
        description="Fraction of requests naming no version the challenger answers."
    )
    started: datetime


def _state(rollout: Rollout) -> RolloutState:
    return RolloutState(
        model=rollout.model,
        champion=rollout.champion,
        challenger=rollout.challenger,
        mode=rollout.mode.value,
        share=rollout.share,
        started=datetime.fromtimestamp(rollout.started, UTC),
    )


@router.get("", summary="The model's rollout", response_model=RolloutState)
async def show(model: str, state: StateDep) -> RolloutState:
    """404 `rollout_not_found` when none runs."""
    return _state(state.rollouts.get(model))


@router.put(
    "",
    summary="Start or change a rollout",
    response_model=RolloutState,
    responses=error_responses(400, 422, 503),
)
async def start(model: str, body: RolloutBody, request: Request, state: StateDep) -> RolloutState:
    """The challenger must be ready, differ from the default version and take its requests
    (same features, types, missing values and categories, same task)."""
    rollout = state.rollouts.begin(model, body.challenger, Mode(body.mode), body.share)
    install_record_routes(request.app, state.registry)
    return _state(rollout)


@router.delete(
    "", summary="End the rollout (the champion keeps serving)", response_model=RolloutState
)
async def end(model: str, request: Request, state: StateDep) -> RolloutState:
    """The rollout that ended; the default version pinned before it comes back."""
    rollout = state.rollouts.end(model)
    install_record_routes(request.app, state.registry)
    return _state(rollout)


@router.post(
    "/promote",
    summary="Make the challenger the default version",
    response_model=RolloutState,
    responses=error_responses(503),
)
async def promote(model: str, request: Request, state: StateDep) -> RolloutState:
    """The rollout ends and its challenger is pinned as the default version."""
    rollout = state.rollouts.promote(model)
    install_record_routes(request.app, state.registry)
    return _state(rollout)
