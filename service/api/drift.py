"""`GET /models/{model}/drift`: how live inputs and predictions compare with the training data.

With drift counting off (`TABSERVE_DRIFT_ENABLED=false`) the route answers 409
`feature_disabled`. A version without a drift reference (its manifest's `drift.available`
is false) answers 200 with `available: false` and the manifest's reason. The monitor's
timer is a component of the app (see `create_app`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from tabserve.service.api.deps import DataPlaneDep, DriftDep, get_drift
from tabserve.service.api.schemas import error_responses
from tabserve.service.core.digits import DigitsInt
from tabserve.service.core.drift import DriftReport

router = APIRouter(
    tags=["models"], dependencies=[Depends(get_drift)], responses=error_responses(409)
)


class BinDrift(BaseModel):
    """One bin: its training share and what the window saw."""

    label: str = Field(
        description="`[4.8, 5.1)` for a numeric range, the category or class itself, "
        "`<missing>` or `<unseen>` (a category training never saw)."
    )
    reference: float = Field(description="Share of the training rows in this bin.")
    share: float | None = Field(description="Share of the window's rows (null: no rows).")
    rows: int = Field(description="Rows of the window in this bin.")


class FeatureDrift(BaseModel):
    """One feature (or the prediction) over the window."""

    name: str
    type: str = Field(description="`number` or `category` (classes, for the prediction).")
    rows: int = Field(description="Rows in the window.")
    psi: float | None = Field(
        description="Population stability index against the training bins (null: no rows)."
    )
    drifting: bool = Field(
        description="Whether the PSI is above `psi_threshold`, over at least `min_rows` rows."
    )
    missing_rate: float | None = Field(
        default=None, description="Share of the rows without a value (null for the prediction)."
    )
    out_of_range_rate: float | None = Field(
        default=None,
        description="Share of the rows outside the training [min, max] (numeric features only).",
    )
    bins: list[BinDrift]


class DriftResponse(BaseModel):
    """Drift of one model version over the sliding window."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model": "iris",
                "version": 1,
                "window_seconds": 3600.0,
                "covered_seconds": 3600.0,
                "since": "2026-11-25T22:00:00Z",
                "rows": 150,
                "psi_threshold": 0.2,
                "min_rows": 100,
                "top_drifting": ["petal_length_cm"],
                "prediction": {
                    "name": "prediction",
                    "type": "category",
                    "rows": 150,
                    "psi": 0.41,
                    "drifting": True,
                    "bins": [{"label": "setosa", "reference": 0.33, "share": 0.1, "rows": 15}],
                },
                "features": [
                    {
                        "name": "petal_length_cm",
                        "type": "number",
                        "rows": 150,
                        "psi": 6.1,
                        "drifting": True,
                        "missing_rate": 0.0,
                        "out_of_range_rate": 0.52,
                        "bins": [
                            {"label": "(-inf, 1.4)", "reference": 0.073, "share": 0.0, "rows": 0}
                        ],
                    }
                ],
            }
        }
    )

    model: str
    version: int
    available: bool = Field(
        default=True,
        description="False when the version has no drift reference (imported without "
        "reference data, or from too small a sample): then `reason` says why, and "
        "`features` is empty.",
    )
    reason: str | None = Field(
        default=None, description="Why drift is unavailable (null when it is available)."
    )
    window_seconds: float = Field(
        description="The configured window (TABSERVE_DRIFT_WINDOW_SECONDS)."
    )
    covered_seconds: float = Field(
        description="What the figures cover: the window, or less if the process is younger."
    )
    since: datetime = Field(description="Start of the covered period (UTC).")
    rows: int = Field(description="Rows served by this version in the covered period.")
    psi_threshold: float = Field(description="PSI above which a feature counts as drifting.")
    min_rows: int = Field(
        description="Fewest rows in the window before anything counts as drifting."
    )
    top_drifting: list[str] = Field(
        description="Features whose PSI is above the threshold, highest first (at most 5)."
    )
    prediction: FeatureDrift | None = Field(
        description="Predicted classes (or values, binned like the training target) against "
        "the training target; null when the manifest has no target distribution."
    )
    features: list[FeatureDrift] = Field(description="Every feature, in the model's order.")


@router.get(
    "/models/{model}/drift",
    summary="Drift of live inputs and predictions against the training data",
    response_model=DriftResponse,
    responses=error_responses(404, 503),
)
async def drift(
    model: str,
    dataplane: DataPlaneDep,
    monitor: DriftDep,
    version: Annotated[
        DigitsInt | None,
        Query(ge=1, description="A version; default: the model's default version."),
    ] = None,
) -> DriftResponse:
    """Per feature, over the window: PSI against the training histogram (or categories),
    missing and out-of-range rates, rows per bin; the same for the predictions.

    Counts come from every worker process; see docs/drift.md for the PSI formula and
    the window's exact meaning.
    """
    served = dataplane.model(model, version)
    return _response(monitor.report(served))


def _response(report: DriftReport) -> DriftResponse:
    return DriftResponse.model_validate(report, from_attributes=True)
