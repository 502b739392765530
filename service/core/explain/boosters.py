"""XGBoost, LightGBM and CatBoost: each library's own exact TreeSHAP contributions.

`pred_contribs`, `pred_contrib` and `get_feature_importance(type="ShapValues")` give
per-column contributions plus a bias column (the expected raw score), in the raw
score's space: log-odds for binary classifiers (one output, the positive class),
per-class scores before softmax, or the regression score.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from tabserve.service.core.explain.attribution import Attribution, Floats, Space, column_of
from tabserve.service.core.explain.methods import Method, UnsupportedError

XGBOOST_TOLERANCE = 1e-5
"""XGBoost sums leaves and contributions in float32: they agree to float32 rounding."""
DOUBLE_TOLERANCE = 1e-9
"""LightGBM and CatBoost compute in float64."""


def library_of(final: Any) -> str | None:
    """`xgboost`, `lightgbm` or `catboost` for their scikit-learn-API models, else None."""
    module = type(final).__module__.split(".")[0]
    return module if module in {"xgboost", "lightgbm", "catboost"} else None


def booster_method(final: Any, classifier: bool) -> Method:
    """The library's exact contributions for `final` (its scikit-learn wrapper)."""
    library = library_of(final)
    if library == "xgboost":
        return _xgboost(final, classifier)
    if library == "lightgbm":
        return _lightgbm(final, classifier)
    if library == "catboost":
        return _catboost(final, classifier)
    raise UnsupportedError(f"{type(final).__name__} is not a model of a known boosting library")


def _split(raw: Any, rows: int, outputs: int) -> Attribution:
    """Contributions [rows, (outputs,) columns + 1] -> attributions and the bias column."""
    array = np.asarray(raw, dtype=np.float64).reshape(rows, outputs, -1)
    return Attribution(array[:, :, :-1], array[:, :, -1], np.zeros((rows, outputs)))


def _with_output(split: Attribution, output: Any, rows: int) -> Attribution:
    return Attribution(split.values, split.base, column_of(output, rows))


def _space(final: Any, classifier: bool, explain: Callable[[Floats], Attribution]) -> Space:
    if classifier:
        return "margin"
    return "value" if _regression_link_is_identity(final, explain) else "margin"


def _xgboost(final: Any, classifier: bool) -> Method:
    xgboost = importlib.import_module("xgboost")
    booster = final.get_booster()
    missing = getattr(final, "missing", np.nan)
    outputs = _classes_out(final) if classifier else 1

    def matrix(x: Floats) -> Any:
        return xgboost.DMatrix(
            x,
            missing=missing,
            feature_names=booster.feature_names,
            feature_types=booster.feature_types,
        )

    def explain(x: Floats) -> Attribution:
        rows, data = x.shape[0], matrix(x)
        split = _split(booster.predict(data, pred_contribs=True), rows, outputs)
        return _with_output(split, booster.predict(data, output_margin=True), rows)

    space = _space(final, classifier, explain)
    return Method("xgboost_pred_contribs", space, explain, XGBOOST_TOLERANCE, outputs)


def _lightgbm(final: Any, classifier: bool) -> Method:
    outputs = _classes_out(final) if classifier else 1

    def explain(x: Floats) -> Attribution:
        rows = x.shape[0]
        split = _split(final.predict(x, pred_contrib=True), rows, outputs)
        return _with_output(split, final.predict(x, raw_score=True), rows)

    space = _space(final, classifier, explain)
    return Method("lightgbm_pred_contrib", space, explain, DOUBLE_TOLERANCE, outputs)


def _catboost(final: Any, classifier: bool) -> Method:
    catboost = importlib.import_module("catboost")
    outputs = _classes_out(final) if classifier else 1

    def explain(x: Floats) -> Attribution:
        rows = x.shape[0]
        values = final.get_feature_importance(
            data=catboost.Pool(x),
            type="ShapValues",
            shap_calc_type="Regular",  # exact; "Approximate" is not
            thread_count=1,
        )
        split = _split(values, rows, outputs)
        raw = final.predict(x, prediction_type="RawFormulaVal", thread_count=1)
        return _with_output(split, raw, rows)

    space = _space(final, classifier, explain)
    return Method("catboost_shap_values", space, explain, DOUBLE_TOLERANCE, outputs)


def _classes_out(final: Any) -> int:
    """Binary models have one raw score (the positive class), others one per class."""
    classes = len(final.classes_)
    return 1 if classes <= 2 else classes


def _regression_link_is_identity(final: Any, explain: Callable[[Floats], Attribution]) -> bool:
    """Whether a regressor's raw score is its prediction (squared or absolute error), or
    a link's input (Poisson, Tweedie: log). Checked on one row of zeros."""
    width = getattr(final, "n_features_in_", None) or len(getattr(final, "feature_names_", []))
    if not width:
        return False
    row = np.zeros((1, int(width)))
    raw = explain(row).output.reshape(-1)
    predicted = np.asarray(final.predict(row), dtype=np.float64).reshape(-1)
    return bool(np.allclose(raw, predicted, rtol=1e-6, atol=1e-9))
