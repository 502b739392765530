"""What the training commands offer, importable without scikit-learn.

`tabserve --help` and each command's `--help` build their parsers from these names
alone, so asking for help loads no scikit-learn, pandas or SQLAlchemy; the commands
load those when they run. `tests/training/test_cli.py` checks the names are exactly
what `estimators.ESTIMATORS` and `datasets.load_bundled` take.
"""

from __future__ import annotations

ESTIMATOR_NAMES = (
    "logistic_regression",
    "ridge",
    "random_forest",
    "hist_gradient_boosting",
    "xgboost",
    "lightgbm",
    "catboost",
)
"""The `--model` choices of `tabserve train` (`estimators.ESTIMATORS`)."""

DATASET_NAMES = ("iris", "wine", "breast_cancer", "digits", "diabetes")
"""The datasets scikit-learn ships that `tabserve train --dataset` takes."""

ALLOW_FLAG = "--allow-version-mismatch"
"""`tabserve import`'s flag for a model made with other library versions."""
