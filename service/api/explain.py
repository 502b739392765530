"""`POST /models/{model}/explain`: exact feature attributions of a model's predictions.

The body is the record predict route's (one record or a list, keyed by feature name),
checked by the same `FeatureSchema`, so a mistake gets the same 400 naming the field.
The answer gives, per row, the prediction and, per output (each class, or the
positive class of a binary classifier explained in margin space, or the regression
value), the base value, the model's output and one attribution per input feature,
which add up to it. A model without an exact method answers 409 `not_explainable`;
with `TABSERVE_EXPLAIN_ENABLED=false`, 409 `feature_disabled`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field, SkipValidation

from tabserve.service.api.deps import DataPlaneDep, ExplanationsDep, get_explanations
from tabserve.service.api.json_bodies import JsonBodyRoute
from tabserve.service.api.limits import enforce_json_limits
from tabserve.service.api.middleware import request_id_of
from tabserve.service.api.records import records_of
from tabserve.service.api.schemas import ErrorBody, error_responses
from tabserve.service.api.v2 import parse_version
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.explain.attribution import Space
from tabserve.service.core.explain.explainer import Explanation
from tabserve.service.core.explain.explanations import Explanations
from tabserve.service.core.explain.methods import MethodName

NOT_EXPLAINABLE = (
    "`not_explainable`: the model has no exact attribution method (e.g. SVC, k-nearest "
    "neighbours, a neural network, an MLflow pyfunc), or its attributions could not be "
    "checked; the body says why and what is supported. `feature_disabled`: "
    "TABSERVE_EXPLAIN_ENABLED is false."
)

router = APIRouter(
    tags=["explanations"],
    dependencies=[Depends(get_explanations), Depends(enforce_json_limits)],
    responses={
        **error_responses(400, 404, 413, 422, 503),
        409: {"model": ErrorBody, "description": NOT_EXPLAINABLE},
    },
    route_class=JsonBodyRoute,
)

Value = float | str | None
RecordsBody = Annotated[
    dict[str, Value] | list[dict[str, Value]],
    SkipValidation,
    Body(
        description="One record, or a list of records, keyed by feature name: the body of "
        "`POST /models/{model}/predict` (its schema there lists the model's features).",
    ),
]


class OutputAttributions(BaseModel):
    """One output of the model for one row, and how each input feature moved it."""

    output: str = Field(
        description="The class this output is about (classifiers), or the target's name."
    )
    base_value: float = Field(
        description="The expected output over the training data: where attributions start."
    )
    value: float = Field(
        description="The model's own output for this row, in `output_space`: base_value plus "
        "the sum of the attributions (to within `tolerance`)."
    )
    attributions: dict[str, float] = Field(
        description="One per input feature, by name, in the model's feature order: its exact "
        "SHAP value (a one-hot encoded feature gets the sum of its columns')."
    )


class RowExplanation(BaseModel):
    """One record's prediction and its attributions."""

    prediction: str | int | float = Field(description="Class label, or value for regressors.")
    probabilities: dict[str, float] | None = Field(
        default=None, description="Classifiers: the probability of each class, by label."
    )
    outputs: list[OutputAttributions]


class ExplainResponse(BaseModel):
    """Exact attributions, one entry per record in the order sent."""

    model: str
    version: int
    request_id: str = Field(description="Echoed in the `X-Request-ID` header.")
    method: MethodName = Field(
        description="`tree_shap`: TreeSHAP (path-dependent, exact) of a scikit-learn tree "
        "model; the three boosters' own exact TreeSHAP; `linear`: coefficient times the "
        "feature's distance from its training mean, in closed form."
    )
    output_space: Space = Field(
        description="What attributions add up to: `probability` (predict_proba: random "
        "forests, extra trees, decision trees; one output per class), `margin` (the raw "
        "score before the link: log-odds of the positive class for binary classifiers, "
        "one score per class before softmax otherwise; gradient boosting, the boosters, "
        "logistic regression) or `value` (the regression prediction)."
    )
    tolerance: float = Field(
        description="Largest gap, relative to max(1, |value|), between base_value plus the "
        "attributions and value: the float rounding of the model's engine (1e-9; 1e-5 for "
        "XGBoost, which computes in float32)."
    )
    features: list[str] = Field(description="The model's input features, in order.")
    explanations: list[RowExplanation]


@router.post(
    "/models/{model}/explain",
    summary="Explain predictions of a model's default version",
    response_model=ExplainResponse,
)
async def explain(
    model: str,
    body: RecordsBody,
    request: Request,
    dataplane: DataPlaneDep,
    explanations: ExplanationsDep,
) -> ExplainResponse:
    """Exact feature attributions (SHAP values) of each record's prediction."""
    return await _explain(request, dataplane, explanations, model, None, body)


@router.post(
    "/models/{model}/versions/{version}/explain",
    summary="Explain predictions of one version of a model",
    response_model=ExplainResponse,
)
async def explain_version(
    model: str,
    version: str,
    body: RecordsBody,
    request: Request,
    dataplane: DataPlaneDep,
    explanations: ExplanationsDep,
) -> ExplainResponse:
    """Exact feature attributions (SHAP values) of each record's prediction."""
    number = parse_version(model, version)
    return await _explain(request, dataplane, explanations, model, number, body)


async def _explain(
    request: Request,
    dataplane: DataPlane,
    explanations: Explanations,
    name: str,
    version: int | None,
    body: Any,
) -> ExplainResponse:
    request.state.model = name
    served = dataplane.model(name, version)
    records = records_of(body)
    explanations.check_rows(len(records))
    batch = served.schema.from_records(records)
    explained = await explanations.explain(served, batch)
    return _response(
        served.name,
        served.version,
        request_id_of(request.scope),
        served.manifest.feature_names,
        explained,
    )


def _response(
    model: str,
    version: int,
    request_id: str,
    features: list[str],
    explained: Explanation,
) -> ExplainResponse:
    base, output = explained.base.tolist(), explained.output.tolist()
    values = explained.values.tolist()
    probabilities = explained.probabilities
    classes = explained.classes
    rows = []
    for r, prediction in enumerate(explained.predictions.tolist()):
        outputs = [
            OutputAttributions(
                output=name,
                base_value=base[r][k],
                value=output[r][k],
                attributions=dict(zip(features, values[r][k], strict=True)),
            )
            for k, name in enumerate(explained.outputs)
        ]
        shares = (
            None
            if probabilities is None
            else dict(zip(classes, probabilities[r].tolist(), strict=True))
        )
        rows.append(RowExplanation(prediction=prediction, probabilities=shares, outputs=outputs))
    return ExplainResponse(
        model=model,
        version=version,
        request_id=request_id,
        method=explained.method,
        output_space=explained.space,
        tolerance=explained.tolerance,
        features=features,
        explanations=rows,
    )
