"""An exact attribution method for one fitted final estimator, and the refusal to make one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tabserve.service.core.explain.attribution import Attribution, Floats, Space

MethodName = Literal[
    "tree_shap",
    "xgboost_pred_contribs",
    "lightgbm_pred_contrib",
    "catboost_shap_values",
    "linear",
]


class UnsupportedError(Exception):
    """The final estimator (or its setup) has no exact method; the message says why."""


@dataclass(frozen=True, slots=True)
class Method:
    """How one final estimator is explained, on the columns it takes."""

    name: MethodName
    space: Space
    explain: Callable[[Floats], Attribution]
    tolerance: float
    """Largest gap, relative to max(1, |output|), between base + attributions and the
    model's own output that still counts as exact (float rounding of its engine)."""
    outputs: int
    """How many outputs are explained: 1 for regressors and for binary classifiers
    explained in margin space (the positive class), else one per class."""
