"""`GET /models`: what is served, with each version's state and training metrics."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tabserve.service.api.deps import StateDep
from tabserve.service.api.schemas import error_responses
from tabserve.service.core.registry import ModelVersion
from tabserve.service.state import AppState

router = APIRouter(tags=["models"])


class FeatureSummary(BaseModel):
    """One input feature."""

    name: str
    type: str = Field(description="`number` or `category`.")
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None


class VersionSummary(BaseModel):
    """One model version."""

    version: int
    state: str = Field(description="`ready` or `failed`.")
    error: str | None = Field(default=None, description="Why it failed to load, if it did.")
    engine: str
    batch_max_rows: int = Field(
        description="Most rows one model call takes when requests are coalesced."
    )
    task: str | None = None
    estimator: str | None = None
    created_at: datetime | None = None
    sha256: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="Held-out metrics.")
    classes: list[str | int] | None = None
    target: str | None = Field(
        default=None, description="The column the model predicts (not an input feature)."
    )
    features: list[FeatureSummary] = Field(default_factory=list)


class ModelSummary(BaseModel):
    """A model name, its default version and every version."""

    name: str
    default_version: int
    versions: list[VersionSummary]


@router.get("/models", summary="List models and versions", response_model=list[ModelSummary])
async def list_served(state: StateDep) -> list[ModelSummary]:
    """Every model with every version, its state and training metrics."""
    return [_summary(state, name) for name in state.registry.names()]


@router.get(
    "/models/{model}",
    summary="Describe one model",
    response_model=ModelSummary,
    responses=error_responses(404),
)
async def describe(model: str, state: StateDep) -> ModelSummary:
    """One model's versions with their features, classes and metrics."""
    return _summary(state, model)


def _summary(state: AppState, name: str) -> ModelSummary:
    registry = state.registry
    return ModelSummary(
        name=name,
        default_version=registry.get(name).version,
        versions=[_version(m, state.dataplane.batch_rows(m)) for m in registry.versions(name)],
    )


def _version(model: ModelVersion, batch_rows: int) -> VersionSummary:
    summary = VersionSummary(
        version=model.version,
        state=model.state.value,
        error=model.error,
        engine=model.engine,
        batch_max_rows=batch_rows,
    )
    if model.served is None:
        return summary
    manifest = model.served.manifest
    features = []
    for feature in manifest.features:
        stats = feature.stats
        if stats is None:  # imported without reference data: no range, no category list
            features.append(FeatureSummary(name=feature.name, type=feature.type))
        elif stats.kind == "number":
            features.append(
                FeatureSummary(name=feature.name, type="number", min=stats.min, max=stats.max)
            )
        else:
            features.append(
                FeatureSummary(name=feature.name, type="category", categories=stats.categories)
            )
    return summary.model_copy(
        update={
            "task": manifest.task,
            "estimator": manifest.estimator.class_name,
            "created_at": manifest.created_at,
            "sha256": manifest.artifact.sha256,
            "metrics": manifest.metrics,
            "classes": manifest.target.classes,
            "target": manifest.target.name,
            "features": features,
        }
    )
