"""The explanation feature's domain error: a model version that has no exact explanation."""

from __future__ import annotations

from tabserve.service.core.errors import ServiceError

SUPPORTED = (
    "tree ensembles (RandomForest, ExtraTrees, DecisionTree, GradientBoosting and "
    "HistGradientBoosting from scikit-learn; XGBoost, LightGBM, CatBoost) and linear models "
    "(LogisticRegression, LinearRegression, Ridge, Lasso, ElasticNet), alone or after "
    "column-wise preprocessing (imputers, scalers, encoders, a ColumnTransformer)"
)
"""What has exact attributions, in words every refusal repeats."""


class NotExplainableError(ServiceError):
    """No exact attribution exists for this model (or could be checked): 409, never a guess.

    The message says which part of the model is the obstacle and what is supported.
    """

    code = "not_explainable"

    def __init__(self, model: str, version: int, reason: str) -> None:
        super().__init__(
            f"model {model!r} version {version} cannot be explained exactly: {reason}. "
            f"Exact attributions exist for {SUPPORTED}"
        )
        self.reason = reason
