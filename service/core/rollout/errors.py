"""The rollout's domain error: a model with no rollout (404, like an unknown model)."""

from __future__ import annotations

from tabserve.service.core.errors import ModelNotFoundError


class RolloutNotFoundError(ModelNotFoundError):
    """The model serves, but no rollout is set for it."""

    code = "rollout_not_found"
