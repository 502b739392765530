"""Browse the prediction log: `GET /models/{model}/predictions`, newest first, paged.

With the log off (`TABSERVE_PREDLOG_MODE=off`) the route answers 409 `feature_disabled`.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from tabserve.service.api.deps import PredictionLogDep, get_prediction_log
from tabserve.service.api.schemas import error_responses
from tabserve.service.core.digits import DigitsInt
from tabserve.service.predlog.records import LoggedPrediction

TAG = "prediction log"
MAX_INT32 = 2**31 - 1  # versions and rows are 32-bit integer columns
router = APIRouter(
    tags=[TAG], dependencies=[Depends(get_prediction_log)], responses=error_responses(409)
)


class LoggedPredictionOut(BaseModel):
    """One logged row: what came in, what the model answered, and the truth if known."""

    id: int = Field(description="The row's place in the log; pages go down from the newest.")
    request_id: str
    row: int = Field(description="The row's index in its request.")
    version: int = Field(
        description="The model version that predicted it: the one that answered, or a shadow "
        "rollout's challenger (its rows share the request id of the champion's)."
    )
    time: float = Field(description="When the request arrived, UTC epoch seconds.")
    latency_seconds: float = Field(description="Queueing plus model call, for the request.")
    inputs: dict[str, Any] = Field(description="Feature -> value; null if redacted or missing.")
    prediction: str | int | float
    probabilities: dict[str, float] | None = Field(description="Classifiers: class -> p.")
    truth: str | int | float | None = Field(description="Ground truth, once fed back.")
    feedback_time: float | None = Field(description="When the truth arrived (epoch s).")


class PredictionsPage(BaseModel):
    """A page of logged rows, newest first."""

    model: str
    items: list[LoggedPredictionOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


@router.get(
    "/models/{model}/predictions",
    response_model=PredictionsPage,
    summary="Logged predictions of a model, newest first",
    responses=error_responses(404, 422),
)
async def list_predictions(
    model: str,
    request: Request,
    log: PredictionLogDep,
    limit: Annotated[DigitsInt, Query(ge=1, le=1000, description="Rows per page.")] = 100,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,18}$", description="`next_cursor` of a page.")
    ] = None,
    since: Annotated[
        float | None, Query(allow_inf_nan=False, description="Earliest time (epoch s).")
    ] = None,
    until: Annotated[
        float | None, Query(allow_inf_nan=False, description="Before this time (epoch s).")
    ] = None,
    version: Annotated[DigitsInt | None, Query(ge=1, le=MAX_INT32)] = None,
    with_feedback: Annotated[bool, Query(description="Only rows with ground truth.")] = False,
) -> PredictionsPage:
    """Rows in log order, newest first; `since`/`until` bound the prediction time."""
    request.state.model = model
    log.registry.versions(model)  # 404 for a model this server does not serve
    found = await anyio.to_thread.run_sync(
        lambda: log.store.page(
            model,
            limit=limit + 1,
            before=int(cursor) if cursor is not None else None,
            since=since,
            until=until,
            version=version,
            with_feedback=with_feedback,
        )
    )
    more = len(found) > limit
    shown = found[:limit]
    return PredictionsPage(
        model=model,
        items=[_out(p) for p in shown],
        next_cursor=str(shown[-1].id) if more else None,
    )


def _out(logged: LoggedPrediction) -> LoggedPredictionOut:
    row = logged.row
    return LoggedPredictionOut(
        id=logged.id,
        request_id=row.request_id,
        row=row.row,
        version=row.version,
        time=row.time,
        latency_seconds=row.latency_seconds,
        inputs=row.inputs,
        prediction=row.prediction,
        probabilities=row.probabilities,
        truth=logged.truth,
        feedback_time=logged.feedback_time,
    )
