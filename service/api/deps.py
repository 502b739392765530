"""Route dependencies as `Annotated` aliases: a route reads `state: StateDep`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tabserve.service.core.dataplane import DataPlane
from tabserve.service.state import AppState


async def get_state(request: Request) -> AppState:
    """The app's state, built by `create_app`."""
    state: AppState = request.app.state.tabserve
    return state


async def get_dataplane(request: Request) -> DataPlane:
    """The core request path."""
    state: AppState = request.app.state.tabserve
    return state.dataplane


StateDep = Annotated[AppState, Depends(get_state)]
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
