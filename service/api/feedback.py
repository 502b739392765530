"""Ground truth in, live quality out: `POST /models/{m}/feedback`, `GET /models/{m}/quality`.

A well-formed feedback body always gets 200 with one result per item, in order:
`accepted`, `unknown_request` (retry later: the row may not be written yet by
another worker), `duplicate` or `invalid` (with `error`). The whole request is
refused only when its shape is wrong (422), it is too large (413), or the model
is not served (404); then nothing is stored. With the prediction log off
(`TABSERVE_PREDLOG_MODE=off`, the default) both routes answer 409 `feature_disabled`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictFloat, StrictInt, Tag

from tabserve.service.api.deps import PredictionLogDep, StateDep, get_prediction_log
from tabserve.service.api.json_bodies import JsonBodyRoute
from tabserve.service.api.limits import enforce_json_limits
from tabserve.service.api.predictions import MAX_INT32
from tabserve.service.api.schemas import error_responses
from tabserve.service.core.errors import InvalidInputError, Problem, TooLargeError
from tabserve.service.predlog.records import Outcome, Truth

# The log's dependency first: with the log off every route here answers 409, whatever
# the body (documented as such, so the routes stay visible).
router = APIRouter(
    tags=["prediction log"],
    dependencies=[Depends(get_prediction_log)],
    responses=error_responses(409),
    route_class=JsonBodyRoute,
)

REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class FeedbackItem(BaseModel):
    """The ground truth of one logged row."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        pattern=REQUEST_ID_PATTERN, description="The X-Request-ID of the predict request."
    )
    row: StrictInt = Field(
        default=0, ge=0, le=MAX_INT32, description="The row's index in that request."
    )
    truth: str | StrictInt | StrictFloat = Field(
        description="Classifiers: a class label (as in the model's `classes`); regressors: "
        "a number."
    )


def _one_or_many(body: Any) -> str:
    return "items" if isinstance(body, list) else "item"


FeedbackBody = Annotated[
    Annotated[FeedbackItem, Tag("item")] | Annotated[list[FeedbackItem], Tag("items")],
    Discriminator(_one_or_many),
    Body(description="One item, or a list of items."),
]


class FeedbackResultOut(BaseModel):
    """What became of one item."""

    request_id: str
    row: int
    outcome: Literal["accepted", "unknown_request", "duplicate", "invalid"]
    version: int | None = Field(description="The version that made the prediction, if found.")
    error: str | None = Field(description="Why an `invalid` item does not fit the model.")


class FeedbackResponse(BaseModel):
    """One result per item, in the order sent."""

    model: str
    accepted: int = Field(description="Items accepted.")
    results: list[FeedbackResultOut]


@router.post(
    "/models/{model}/feedback",
    response_model=FeedbackResponse,
    summary="Send ground truth for logged predictions",
    responses=error_responses(400, 404, 413, 422),
    dependencies=[Depends(enforce_json_limits)],
)
async def post_feedback(
    model: str, body: FeedbackBody, request: Request, state: StateDep, log: PredictionLogDep
) -> FeedbackResponse:
    """Join each item with the logged row of `model` it names; one outcome per item."""
    request.state.model = model
    items = body if isinstance(body, list) else [body]
    limit = log.settings.feedback_max_items
    if len(items) > limit:
        raise TooLargeError(
            f"{len(items)} feedback items; at most {limit} per request",
            [Problem("items", f"at most {limit} items (feedback_max_items)", len(items))],
        )
    truths = [Truth(i.request_id, i.row, i.truth) for i in items]
    results = await anyio.to_thread.run_sync(log.feedback.record, model, truths)
    return FeedbackResponse(
        model=model,
        accepted=sum(r.outcome is Outcome.ACCEPTED for r in results),
        results=[
            FeedbackResultOut(
                request_id=r.request_id,
                row=r.row,
                outcome=r.outcome.value,
                version=r.version,
                error=r.error,
            )
            for r in results
        ],
    )


class VersionQualityOut(BaseModel):
    """Quality of one version over the window; metrics that do not apply are null."""

    version: int
    rows: int = Field(description="Logged rows with ground truth in the window.")
    accuracy: float | None = Field(description="Classifiers: fraction predicted right.")
    macro_f1: float | None = Field(description="Classifiers: unweighted mean F1 over classes.")
    mae: float | None = Field(description="Regressors: mean absolute error.")


class QualityResponse(BaseModel):
    """Live quality per version from ground truth that arrived in the window."""

    model: str
    task: Literal["classification", "regression"]
    window_seconds: float
    since: datetime = Field(description="Start of the window (ISO 8601, UTC), as in drift.")
    versions: list[VersionQualityOut]


@router.get(
    "/models/{model}/quality",
    response_model=QualityResponse,
    summary="Live quality per version, from ground truth",
    responses=error_responses(400, 404, 422),
)
async def get_quality(
    model: str,
    request: Request,
    state: StateDep,
    log: PredictionLogDep,
    window_seconds: Annotated[
        float | None,
        Query(gt=0, le=90 * 86400, description="Default: the quality_window_seconds setting."),
    ] = None,
    since: Annotated[
        datetime | None,
        Query(
            description="Start of the window instead of `window_seconds`: epoch seconds or "
            "ISO 8601 (UTC when it has no offset)."
        ),
    ] = None,
) -> QualityResponse:
    """Accuracy and macro F1 (classifiers) or MAE (regressors), per version."""
    request.state.model = model
    served = state.registry.get(model).served
    now = time.time()
    if since is not None:
        window = now - _window_start(since, window_seconds, now)
    else:
        window = window_seconds or log.settings.quality_window_seconds
    start = now - window
    measured = await anyio.to_thread.run_sync(log.quality, model, start)
    return QualityResponse(
        model=model,
        task=served.manifest.task if served is not None else "classification",
        window_seconds=window,
        since=datetime.fromtimestamp(start, UTC),
        versions=[
            VersionQualityOut(
                version=q.version, rows=q.rows, accuracy=q.accuracy, macro_f1=q.macro_f1, mae=q.mae
            )
            for q in measured
        ],
    )


def _window_start(since: datetime, window_seconds: float | None, now: float) -> float:
    """`since` as epoch seconds, refused with `window_seconds` or when not in the past."""
    if window_seconds is not None:
        raise InvalidInputError.of(
            "invalid_window",
            [Problem("since", "either since or window_seconds, not both", since.isoformat())],
        )
    start = (since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp()
    if not 0 < now - start <= 90 * 86400:
        raise InvalidInputError.of(
            "invalid_window",
            [Problem("since", "a time in the last 90 days", since.isoformat())],
        )
    return start
