"""Linear and logistic models as one float64 matrix product: exact and cheap per call.

`X @ coef.T + intercept` is what scikit-learn's `decision_function` computes,
followed by the same link (`expit` for binary, softmax for multinomial); here it
runs without scikit-learn's per-call input validation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from tabserve.service.core.engines.preparation import UnsupportedModelError

LINEAR_REGRESSORS = (LinearRegression, Ridge)


class LinearScorer:
    """Decision values, probabilities or regression values of a fitted linear model."""

    def __init__(self, model: Any) -> None:
        if isinstance(model, LogisticRegression):
            if _one_vs_rest(model):
                raise UnsupportedModelError("one-vs-rest LogisticRegression is not supported")
            self.link = "expit" if len(model.classes_) <= 2 else "softmax"
        elif isinstance(model, LINEAR_REGRESSORS):
            if np.ndim(model.coef_) != 1:
                raise UnsupportedModelError(f"{type(model).__name__} with several targets")
            self.link = "identity"
        else:
            raise UnsupportedModelError(f"{type(model).__name__} is not a supported linear model")
        coef = np.asarray(model.coef_, dtype=np.float64)
        # The same (transposed view) operand as decision_function, so BLAS sums alike.
        self._coef_t = coef.T if coef.ndim == 2 else coef
        self._intercept = np.asarray(model.intercept_, dtype=np.float64)
        self._flat = coef.ndim == 2 and coef.shape[0] == 1

    def values(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Regression values, float64 [rows]."""
        out: npt.NDArray[np.float64] = x @ self._coef_t + self._intercept
        return out

    def proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Class probabilities, float64 [rows, classes], as `predict_proba` computes them."""
        scores = x @ self._coef_t + self._intercept
        if self.link == "expit":
            positive = expit(scores.reshape(-1) if self._flat else scores)
            return np.stack([1 - positive, positive], axis=1)
        scores -= scores.max(axis=1).reshape(-1, 1)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape(-1, 1)
        return scores


def _one_vs_rest(model: LogisticRegression) -> bool:
    # scikit-learn < 1.7 still has `multi_class`; "auto" meant one-vs-rest for liblinear.
    multi_class = getattr(model, "multi_class", "deprecated")
    if len(model.classes_) <= 2:
        return False
    return multi_class == "ovr" or (multi_class == "auto" and model.solver == "liblinear")
