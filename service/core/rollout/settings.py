"""Rollout settings (`TABSERVE_ROLLOUT_*`): how much shadow work may wait and run at once.

Rollouts themselves are set per model at run time (`PUT /models/{name}/rollout`);
these only bound the background work a shadow rollout adds.
"""

from __future__ import annotations

from pydantic import Field

from tabserve.service.core.feature_settings import FeatureSettings, feature_config


class RolloutSettings(FeatureSettings):
    """Champion/challenger rollouts: the shadow copies' queue and workers."""

    model_config = feature_config("TABSERVE_ROLLOUT_")

    shadow_queue: int = Field(
        default=256,
        ge=1,
        description=(
            "Answered requests that may wait for the challenger of a shadow rollout; past "
            "it, a copy is dropped and counted (`tabserve_rollout_shadow_requests_total"
            '{outcome="dropped"}`), never making the champion\'s answer wait.'
        ),
    )
    shadow_concurrency: int = Field(
        default=2,
        ge=1,
        le=64,
        description=(
            "Shadow copies the challenger predicts at once (they share its batcher and the "
            "inference threads with live traffic, so this bounds what shadowing takes)."
        ),
    )
