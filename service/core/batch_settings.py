"""Batching settings (`TABSERVE_BATCH_*`, `TABSERVE_QUEUE_MAX_ROWS`): how calls coalesce."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from tabserve.service.core.feature_settings import FeatureSettings, feature_config


class BatchSettings(FeatureSettings):
    """Adaptive batching: concurrent requests of one model version share a model call."""

    model_config = feature_config("TABSERVE_BATCH_")

    max_rows: int = Field(
        default=256,
        ge=1,
        description=(
            "Most rows one model call takes when concurrent requests are coalesced "
            "(adaptive batching); 1 turns batching off."
        ),
    )
    max_rows_by_model: dict[str, PositiveInt] = Field(
        default_factory=dict,
        description=(
            'batch_max_rows for particular models, by name, as JSON (e.g. {"forest": 64}): '
            "a model whose engine slows per row in large calls, or one that must answer "
            "each request alone."
        ),
    )
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description=(
            "How long an idle model holds a request to gather others into its call. "
            "0: an idle model answers at once; batches form only while it is busy."
        ),
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        description="Model calls in flight at once per model version (each on its own thread).",
    )
    queue_max_rows: int = Field(
        default=4096,
        ge=1,
        validation_alias="TABSERVE_QUEUE_MAX_ROWS",
        description=(
            "Most rows waiting per model version; a request that would exceed it gets 503 "
            "with Retry-After at once instead of waiting without bound."
        ),
    )
