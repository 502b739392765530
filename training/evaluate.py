"""Held-out evaluation: the metrics stored in the manifest and printed after training."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn import metrics as sk_metrics

from tabserve.artifact.manifest import Task


def evaluate(
    model: Any, task: Task, features: npt.NDArray[Any], target: npt.NDArray[Any]
) -> dict[str, float]:
    """Classification: accuracy, macro F1, ROC-AUC (one-vs-rest). Regression: R2, MAE, RMSE."""
    predicted = model.predict(features)
    if task == "regression":
        return {
            "r2": float(sk_metrics.r2_score(target, predicted)),
            "mae": float(sk_metrics.mean_absolute_error(target, predicted)),
            "rmse": float(np.sqrt(sk_metrics.mean_squared_error(target, predicted))),
        }
    scores = {
        "accuracy": float(sk_metrics.accuracy_score(target, predicted)),
        "f1_macro": float(sk_metrics.f1_score(target, predicted, average="macro")),
    }
    auc = _roc_auc(model, features, target)
    if auc is not None:
        scores["roc_auc"] = auc
    return scores


def _roc_auc(model: Any, features: npt.NDArray[Any], target: npt.NDArray[Any]) -> float | None:
    if not hasattr(model, "predict_proba"):
        return None
    proba = model.predict_proba(features)
    classes = list(model.classes_)
    if len(set(target.tolist())) < 2:
        return None  # AUC is undefined when the test split holds one class
    if len(classes) == 2:
        return float(sk_metrics.roc_auc_score(target == classes[1], proba[:, 1]))
    return float(
        sk_metrics.roc_auc_score(target, proba, multi_class="ovr", average="macro", labels=classes)
    )


def format_table(scores: dict[str, float]) -> str:
    """A two-column text table of metric names and values."""
    width = max(len("metric"), *(len(name) for name in scores))
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{name.ljust(width)}  {value:.4f}" for name, value in scores.items()]
    return "\n".join(lines)
