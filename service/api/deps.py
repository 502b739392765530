"""Route dependencies as `Annotated` aliases: a route reads `state: StateDep`.

With `app_state.py`, the only module that reads `app.state`: everything else takes the app's parts
through these, typed. A feature that is off makes its dependency raise
`FeatureDisabledError` (409 `feature_disabled`, naming the setting that turns it on),
so its routes stay documented and answer whatever the settings.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from tabserve.service.api.app_state import app_state
from tabserve.service.api.stream_hub import StreamHub
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.drift import DriftMonitor
from tabserve.service.core.errors import FeatureDisabledError
from tabserve.service.core.explain.explanations import Explanations
from tabserve.service.predlog.log import PredictionLog
from tabserve.service.state import AppState
from tabserve.service.web_config import WebConfig


async def get_state(connection: HTTPConnection) -> AppState:
    """The app's state, built by `create_app` (HTTP requests and WebSockets alike)."""
    return app_state(connection.app)


async def get_dataplane(connection: HTTPConnection) -> DataPlane:
    """The core request path."""
    return app_state(connection.app).dataplane


async def get_web(connection: HTTPConnection) -> WebConfig:
    """What the web layer needs of the settings: limits, deadlines, switches."""
    return app_state(connection.app).web


async def get_streams(connection: HTTPConnection) -> StreamHub:
    """The app's open prediction streams."""
    streams = connection.app.state.streams
    if not isinstance(streams, StreamHub):
        raise TypeError(f"app.state.streams is a {type(streams).__name__}, not a StreamHub")
    return streams


async def get_prediction_log(connection: HTTPConnection) -> PredictionLog:
    """The prediction log; 409 `feature_disabled` when `TABSERVE_PREDLOG_MODE` is off."""
    log = app_state(connection.app).predlog
    if log is None:
        raise FeatureDisabledError(
            "the prediction log", "TABSERVE_PREDLOG_MODE", "`all` or `sampled`", "off"
        )
    return log


async def get_drift(connection: HTTPConnection) -> DriftMonitor:
    """The drift monitor; 409 `feature_disabled` when `TABSERVE_DRIFT_ENABLED` is false."""
    monitor = app_state(connection.app).drift
    if monitor is None:
        raise FeatureDisabledError("drift counting", "TABSERVE_DRIFT_ENABLED", "true", False)
    return monitor


async def get_explanations(connection: HTTPConnection) -> Explanations:
    """Explanations; 409 `feature_disabled` when `TABSERVE_EXPLAIN_ENABLED` is false."""
    explanations = app_state(connection.app).explanations
    if explanations is None:
        raise FeatureDisabledError("explanations", "TABSERVE_EXPLAIN_ENABLED", "true", False)
    return explanations


StateDep = Annotated[AppState, Depends(get_state)]
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
WebDep = Annotated[WebConfig, Depends(get_web)]
StreamsDep = Annotated[StreamHub, Depends(get_streams)]
PredictionLogDep = Annotated[PredictionLog, Depends(get_prediction_log)]
DriftDep = Annotated[DriftMonitor, Depends(get_drift)]
ExplanationsDep = Annotated[Explanations, Depends(get_explanations)]
