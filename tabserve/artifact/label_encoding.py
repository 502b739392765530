"""A classifier wrapper that lets estimators needing labels 0..n-1 learn any class labels.

XGBoost's `XGBClassifier` refuses labels other than `0..n-1` ("Invalid classes
inferred from unique values of `y`"), where the data's target holds strings such
as "yes"/"no". Training wraps it: the labels are encoded for `fit` and decoded in
`predict`, so the exported pipeline answers with the dataset's own labels, as every
other estimator does. The compiled engines look through it to the estimator inside.

It is part of the artifact format: pickled artifacts name this class, so training
writes it and the service reads it, and both import it from here. Artifacts pickled
before it moved here name `tabserve.training.label_encoding.LabelEncodedClassifier`;
that module re-exports this class so they still load.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted


class LabelEncodedClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """`estimator` fitted on the codes of `y`; `classes_` are the original labels."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, x: Any, y: Any) -> LabelEncodedClassifier:
        """Encode `y` as 0..n-1 (sorted labels, as scikit-learn orders `classes_`) and fit."""
        encoder = LabelEncoder().fit(y)
        self.classes_: npt.NDArray[Any] = encoder.classes_
        self.estimator_: Any = clone(self.estimator).fit(x, encoder.transform(y))
        self.n_features_in_: int = int(self.estimator_.n_features_in_)
        return self

    def predict_proba(self, x: Any) -> npt.NDArray[np.float64]:
        """The inner estimator's probabilities; column i is `classes_[i]`."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.predict_proba(x), dtype=np.float64)

    def predict(self, x: Any) -> npt.NDArray[Any]:
        """The most probable original label per row."""
        return np.asarray(self.classes_[self.predict_proba(x).argmax(axis=1)])
