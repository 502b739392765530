"""Pydantic models generated from a manifest, so `/docs` shows each model's real features.

They document the record routes' body; the body itself is checked by the model's
`FeatureSchema` (`records.py`), so its errors are worded as on V1 and V2.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from tabserve.artifact.manifest import CategoryStats, Manifest, NumericStats


class RecordPrediction(BaseModel):
    """The model's answer for one record."""

    prediction: str | int | float = Field(description="Class label, or value for regressors.")
    probabilities: dict[str, float] | None = Field(
        default=None, description="Classifiers: the probability of each class, by label."
    )


class PredictResponse(BaseModel):
    """Answers in the order of the records sent."""

    model: str
    version: int
    request_id: str = Field(description="Echoed in the `X-Request-ID` header; quote it in logs.")
    predictions: list[RecordPrediction]


def record_model(manifest: Manifest, example_row: list[Any]) -> type[BaseModel]:
    """A model whose fields are the manifest's features (keyed by their real names).

    `example_row` (in feature order) becomes the example shown in the docs.
    """
    missing_ok = manifest.missing_allowed
    fields: dict[str, Any] = {}
    example = dict(zip(manifest.feature_names, example_row, strict=True))
    for index, feature in enumerate(manifest.features):
        stats = feature.stats
        if isinstance(stats, NumericStats):
            kind: Any = Annotated[float, Field(strict=True, allow_inf_nan=False)]
            described = (
                f"Number. Training range [{stats.min:g}, {stats.max:g}], "
                f"median {stats.quantiles['p50']:g}."
            )
        elif isinstance(stats, CategoryStats):
            kind = Literal[tuple(stats.categories)]
            described = f"Category, one of: {', '.join(stats.categories)}."
        elif feature.type == "number":  # no statistics: imported without reference data
            kind = Annotated[float, Field(strict=True, allow_inf_nan=False)]
            described = "Number (no training range known)."
        else:
            kind = Annotated[str, Field(strict=True)]
            described = "Category, any string (no training categories known)."
        if missing_ok[index]:
            kind = kind | None
            described += " May be null (missing)."
        fields[f"f{index}"] = (kind, Field(alias=feature.name, description=described))
    return create_model(
        f"{_pascal(manifest.name)}V{manifest.version}Record",
        __config__=ConfigDict(
            extra="forbid",
            populate_by_name=False,
            json_schema_extra={"examples": [example]},
        ),
        __doc__=f"One input row of model {manifest.name!r} version {manifest.version}.",
        **fields,
    )


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)
