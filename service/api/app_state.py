"""The typed way from a Starlette app to the `AppState` `create_app` put on it."""

from __future__ import annotations

from starlette.applications import Starlette

from tabserve.service.state import AppState


def app_state(app: Starlette) -> AppState:
    """The state `create_app` put on `app` (for handlers that cannot take dependencies)."""
    state = app.state.tabserve
    if not isinstance(state, AppState):
        raise TypeError(f"app.state.tabserve is a {type(state).__name__}, not an AppState")
    return state
