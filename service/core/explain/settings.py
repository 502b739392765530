"""Explanation settings (`TABSERVE_EXPLAIN_*`): on or off, and what one call may cost."""

from __future__ import annotations

from pydantic import Field

from tabserve.service.core.feature_settings import FeatureSettings, feature_config


class ExplainSettings(FeatureSettings):
    """Exact per-prediction attributions (`POST /models/{name}/explain`)."""

    model_config = feature_config("TABSERVE_EXPLAIN_")

    enabled: bool = Field(
        default=True,
        description=(
            "Answer `POST /models/{name}/explain` with exact feature attributions; off: the "
            "route answers 409 `feature_disabled` and no explainer is ever built."
        ),
    )
    max_rows: int = Field(
        default=100,
        ge=1,
        description=(
            "Most rows one explain call may carry (else 413). An explanation costs more than "
            "a prediction (a forest's exact attributions walk every path of every tree), so "
            "it has its own bound, below `TABSERVE_MAX_ROWS`."
        ),
    )
    threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Threads that compute explanations, apart from the inference threads: at most "
            "this many explain calls run at once and the others wait, so explanations never "
            "take the threads predictions run on."
        ),
    )
