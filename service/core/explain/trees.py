"""scikit-learn's tree ensembles: exact TreeSHAP (path-dependent) through shap's C extension.

`shap` is imported here, when the first explainer of such a model is built, never at
start-up or on the predict path (it imports numba: about 2 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

from tabserve.service.core.explain.attribution import (
    Attribution,
    Floats,
    Space,
    column_of,
    per_output,
)
from tabserve.service.core.explain.methods import Method, UnsupportedError

AVERAGED = (
    RandomForestClassifier,
    ExtraTreesClassifier,
    DecisionTreeClassifier,
    ExtraTreeClassifier,
)
"""Classifiers whose trees hold class fractions: their raw output is `predict_proba`."""
BOOSTED = (GradientBoostingClassifier, HistGradientBoostingClassifier)
"""Classifiers whose raw output is `decision_function`: log-odds, or per-class scores."""
REGRESSORS = (
    RandomForestRegressor,
    ExtraTreesRegressor,
    DecisionTreeRegressor,
    ExtraTreeRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
)
TOLERANCE = 1e-9
"""shap evaluates the trees in float64: sums agree with the model to rounding."""


def is_sklearn_tree(final: Any) -> bool:
    """Whether `final` is one of the scikit-learn tree models explained here."""
    return isinstance(final, AVERAGED + BOOSTED + REGRESSORS)


def tree_method(final: Any) -> Method:
    """TreeSHAP of a fitted scikit-learn tree model, against its training cover."""
    try:
        import shap
    except ImportError as exc:
        raise UnsupportedError(
            f"explaining {type(final).__name__} needs the shap package, which is not "
            "installed here: pip install 'tabserve[explain]'"
        ) from exc
    space: Space
    output: Callable[[Floats], Any]
    if isinstance(final, AVERAGED):
        space, output = "probability", final.predict_proba
    elif isinstance(final, BOOSTED):
        space, output = "margin", final.decision_function
    else:
        space, output = "value", final.predict
    try:
        explainer = shap.TreeExplainer(final, model_output="raw")
    except Exception as exc:  # shap says what it does not support (multi-class GB)
        raise UnsupportedError(f"{type(final).__name__}: {exc}") from exc
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))

    def explain(x: Floats) -> Attribution:
        rows = x.shape[0]
        values = np.asarray(explainer.shap_values(x, check_additivity=False))
        if values.ndim == 3:  # [rows, columns, outputs]
            values = values.transpose(0, 2, 1)
        outputs = base.size
        return Attribution(
            per_output(values, rows, outputs),
            np.broadcast_to(base, (rows, outputs)),
            column_of(output(x), rows),
        )

    return Method("tree_shap", space, explain, TOLERANCE, outputs=int(base.size))
