"""One model version's explainer: the artifact's own estimator, split and explained exactly.

The estimator is the one the artifact holds (not a compiled engine): its preprocessing
turns validated rows into the final estimator's columns, an exact method attributes the
final estimator's output to those columns, and the columns' attributions are summed back
to the input features they come from. Built once per version, it is checked on rows drawn
from the manifest before it answers: attributions that do not add up to the model's own
output are refused, never served as exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.pipeline import Pipeline

from tabserve.artifact.frames import FrameBuilder
from tabserve.artifact.label_encoding import LabelEncodedClassifier
from tabserve.artifact.manifest import Manifest
from tabserve.service.core.explain.attribution import Floats, Space
from tabserve.service.core.explain.background import training_means
from tabserve.service.core.explain.boosters import booster_method, library_of
from tabserve.service.core.explain.columns import MixedColumnsError, feature_sources
from tabserve.service.core.explain.errors import NotExplainableError
from tabserve.service.core.explain.linear import is_linear, linear_method
from tabserve.service.core.explain.methods import Method, MethodName, UnsupportedError
from tabserve.service.core.explain.trees import is_sklearn_tree, tree_method


@dataclass(frozen=True, slots=True)
class Explanation:
    """Exact attributions of a batch, by input feature, with the predictions they explain."""

    method: MethodName
    space: Space
    tolerance: float
    """Largest gap between base + attributions and the output, relative to max(1, |output|)."""
    classes: list[str]
    """Class labels, in the order of `probabilities` (empty for regressors)."""
    outputs: list[str]
    """What each output is: a class label, or the target's name for regressors."""
    predictions: npt.NDArray[Any]
    """[rows]: labels or values, as the artifact's estimator predicts them."""
    probabilities: Floats | None
    """[rows, classes] for classifiers."""
    base: Floats
    """[rows, outputs]"""
    values: Floats
    """[rows, outputs, features], features in manifest order."""
    output: Floats
    """[rows, outputs]: the model's own output, which base + values sum to."""


class ModelExplainer:
    """Explains a model version's predictions; raises NotExplainableError when it cannot."""

    def __init__(self, manifest: Manifest, estimator: Any, check_rows: npt.NDArray[Any]) -> None:
        """Split `estimator`, choose its exact method and check it on `check_rows`."""
        self.manifest = manifest
        self._estimator = estimator
        frame = manifest.estimator.input == "frame"
        self._frame = FrameBuilder(manifest.features) if frame else None
        classes = manifest.target.classes
        self._classes = np.asarray(estimator.classes_) if classes is not None else None
        try:
            self._steps, final = _split(estimator)
            self._sources = feature_sources(self._steps, len(manifest.features))
            self._fold = np.zeros((len(self._sources), len(manifest.features)))
            self._fold[np.arange(len(self._sources)), self._sources] = 1.0
            self.method = self._method(_unwrapped(final))
        except (UnsupportedError, MixedColumnsError) as exc:
            raise self._refusal(str(exc)) from exc
        self.outputs = self._output_names()
        self._check(check_rows)

    def explain(self, features: npt.NDArray[Any]) -> Explanation:
        """Attributions of validated rows (manifest order), checked to add up exactly."""
        columns = self._columns(features)
        attribution = self.method.explain(columns)
        row, gap = attribution.worst_gap()
        if gap > self.method.tolerance:
            raise self._refusal(
                f"its attributions for row {row} miss its output by {gap:.3g} (relative), "
                f"more than {self.method.tolerance:g}"
            )
        # Each column's attribution goes to the feature it comes from (one-hot columns sum).
        values = attribution.values @ self._fold
        predictions, probabilities = self._predict(features)
        return Explanation(
            self.method.name,
            self.method.space,
            self.method.tolerance,
            [] if self._classes is None else [str(c) for c in self._classes],
            self.outputs,
            predictions,
            probabilities,
            np.array(attribution.base),
            values,
            attribution.output,
        )

    def _method(self, final: Any) -> Method:
        classifier = self._classes is not None
        if is_sklearn_tree(final):
            return tree_method(final)
        if library_of(final) is not None:
            return booster_method(final, classifier)
        if is_linear(final):
            return linear_method(final, training_means(self.manifest, self._columns, self._sources))
        raise UnsupportedError(f"{type(final).__name__} has no exact attribution method")

    def _output_names(self) -> list[str]:
        if self._classes is None:
            return [self.manifest.target.name]
        labels = [str(c) for c in self._classes]
        if self.method.outputs == len(labels):
            return labels
        if self.method.outputs == 1 and len(labels) == 2:
            return labels[1:]  # one raw score: the positive class's log-odds
        raise self._refusal(f"{self.method.outputs} outputs for {len(labels)} classes")

    def _columns(self, features: npt.NDArray[Any]) -> Floats:
        """The final estimator's input: the artifact's own preprocessing of the rows."""
        out: Any = self._frame(features) if self._frame is not None else features
        for step in self._steps:
            out = step.transform(out)
        if hasattr(out, "toarray"):  # a sparse matrix
            out = out.toarray()
        columns = np.asarray(out, dtype=np.float64)
        if columns.shape[1] != len(self._sources):
            raise self._refusal(
                f"its preprocessing makes {columns.shape[1]} columns, not the "
                f"{len(self._sources)} its steps name"
            )
        return columns

    def _predict(self, features: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], Floats | None]:
        rows = self._frame(features) if self._frame is not None else features
        if self._classes is None:
            return np.asarray(self._estimator.predict(rows)), None
        proba = np.asarray(self._estimator.predict_proba(rows), dtype=np.float64)
        return self._classes[proba.argmax(axis=1)], proba

    def _check(self, rows: npt.NDArray[Any]) -> None:
        """Explain rows drawn from the manifest once: a method that is not exact here is
        refused before it answers anyone."""
        try:
            self.explain(rows)
        except NotExplainableError:
            raise
        except Exception as exc:
            raise self._refusal(f"explaining it failed: {type(exc).__name__}: {exc}") from exc

    def _refusal(self, reason: str) -> NotExplainableError:
        return NotExplainableError(self.manifest.name, self.manifest.version, reason)


def _split(estimator: Any) -> tuple[list[Any], Any]:
    """(preprocessing steps, final estimator) of a fitted estimator or nested Pipelines."""
    if not isinstance(estimator, Pipeline):
        return [], estimator
    steps = [s for _, s in estimator.steps if s is not None and not _is_passthrough(s)]
    if not steps:
        raise UnsupportedError("the Pipeline has no steps")
    *before, last = steps
    inner, final = _split(last)
    return [*before, *inner], final


def _is_passthrough(step: Any) -> bool:
    return isinstance(step, str) and step == "passthrough"


def _unwrapped(final: Any) -> Any:
    """The model inside tabserve's label-encoding wrapper (it decodes labels only)."""
    return final.estimator_ if isinstance(final, LabelEncodedClassifier) else final
