"""Estimators through ONNX Runtime: conversion with skl2onnx, one single-threaded session.

Only the final estimator is converted; its input is the float64 matrix the
`Preparer` produces, cast to float32 (what skl2onnx's tree converters expect:
scikit-learn's own trees compare float32 features too, and skl2onnx adjusts the
float64 thresholds so `float32(x) <= t` decides the same way).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt
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
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from service.core.engines.preparation import UnsupportedModelError

TREE_ENSEMBLES = (
    RandomForestClassifier,
    RandomForestRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
# Linear models convert too (the benchmark compares them); the service scores them in numpy.
CONVERTIBLE = (*TREE_ENSEMBLES, LogisticRegression, LinearRegression, Ridge)
INPUT_NAME = "X"


def library_versions() -> dict[str, str]:
    """Versions that decide what a conversion produces (recorded in the cache).

    Read from package metadata: importing skl2onnx takes a second, and a load that
    reuses its cache never needs it.
    """
    return {name: metadata.version(name) for name in ("skl2onnx", "onnx", "scikit-learn")}


def convert(model: Any) -> bytes:
    """The serialized ONNX graph of a fitted estimator (float32 input `X`)."""
    if not isinstance(model, CONVERTIBLE):
        raise UnsupportedModelError(f"{type(model).__name__} has no ONNX conversion here")
    if getattr(model, "is_categorical_", None) is not None:
        raise UnsupportedModelError(f"{type(model).__name__} with native categorical features")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": False}} if hasattr(model, "classes_") else None
    with warnings.catch_warnings():
        # skl2onnx writes HistGradientBoosting's boolean missing-value flags as ints;
        # protobuf 6 warns that 7 will refuse them (hence protobuf<7 in our dependencies).
        warnings.filterwarnings("ignore", "Field onnx.AttributeProto", DeprecationWarning)
        graph = convert_sklearn(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, int(model.n_features_in_)]))],
            options=options,
        )
    data: bytes = graph.SerializeToString()
    return data


class OnnxScorer:
    """One ONNX Runtime session: float64 rows in, float64 probabilities or values out."""

    def __init__(self, graph: bytes, *, classifier: bool) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # The service scales with processes; a thread pool per session would oversubscribe.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        outputs = session.get_outputs()
        inputs = session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise UnsupportedModelError(
                f"ONNX graph inputs {[i.name for i in inputs]}, expected [X]"
            )
        # skl2onnx classifiers: (label, probabilities); regressors: (variable).
        self._outputs = [outputs[1 if classifier else 0].name]
        self._session = session
        self._run = _fast_run(session)
        self.scores = self._probabilities if classifier else self._values

    def _values(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Regression values [rows, 1] as float64."""
        result = self._run(self._outputs, {INPUT_NAME: x.astype(np.float32)}, None)
        return np.asarray(result[0], dtype=np.float64)

    def _probabilities(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Probabilities [rows, classes] as float64, each row summing to 1.

        Renormalising in float64 cancels the float32 rounding that all of a forest's
        leaf weights share (ten trees' 0.1f add up to 1.0000001), so a certain class
        gets exactly 1.0 and rows are distributions, as scikit-learn's are.
        """
        result = self._run(self._outputs, {INPUT_NAME: x.astype(np.float32)}, None)
        proba = np.asarray(result[0], dtype=np.float64)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba


def _fast_run(session: Any) -> Callable[..., list[Any]]:
    # InferenceSession.run re-checks input names and OrtValue ownership on every call
    # (~2-4 µs); our feed is always the one pre-checked input name and a numpy array,
    # so call the C++ session directly when this onnxruntime exposes it.
    inner = getattr(session, "_sess", None)
    run = getattr(inner, "run", None)
    if callable(run):
        return run  # type: ignore[no-any-return]
    return session.run  # type: ignore[no-any-return]
