"""Estimators through ONNX Runtime: conversion with skl2onnx, one single-threaded session.

Only the final estimator is converted; its input is the float64 matrix the
`Preparer` produces. Decision-tree ensembles take it as float32: scikit-learn's
trees compare float32 features with float64 thresholds, and skl2onnx adjusts each
threshold so `float32(x) <= t` decides the same way. HistGradientBoosting compares
in float64, so its graph takes float64 and gets the exact thresholds back.
XGBoost, LightGBM and CatBoost models convert through `boosters` (LightGBM, which
compares in float64 too, gets its exact thresholds the same way).
"""

from __future__ import annotations

import os
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

from tabserve.service.core.engines.boosters import booster_graph, booster_versions, library_of
from tabserve.service.core.engines.preparation import UnsupportedModelError

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
FORESTS = (
    RandomForestClassifier,
    RandomForestRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
)
# Linear models convert too (the benchmark compares them); the service scores them in numpy.
CONVERTIBLE = (*TREE_ENSEMBLES, LogisticRegression, LinearRegression, Ridge)
INPUT_NAME = "X"
PROBABILITIES = "probabilities"
# Bump when `convert` changes what it produces: cached graphs of older versions are rebuilt.
CONVERTER_VERSION = 3


def is_tree_ensemble(model: Any) -> bool:
    """A scikit-learn tree ensemble, or an XGBoost, LightGBM or CatBoost model."""
    return isinstance(model, TREE_ENSEMBLES) or library_of(model) is not None


def library_versions(model: Any = None) -> dict[str, str]:
    """Versions that decide what converting `model` produces (recorded in the cache).

    Read from package metadata: importing skl2onnx takes a second, and a load that
    reuses its cache never needs it. A boosting library's model adds its library (and
    onnxmltools for XGBoost and LightGBM).
    """
    versions = {name: metadata.version(name) for name in ("skl2onnx", "onnx", "scikit-learn")}
    extra = booster_versions(model) if model is not None else {}
    return {**versions, **extra, "tabserve-converter": str(CONVERTER_VERSION)}


def convert(model: Any) -> bytes:
    """The serialized ONNX graph of a fitted estimator, input `X` [rows, features].

    The input is float32, as scikit-learn's decision trees compare features, except
    for HistGradientBoosting, which compares float64 features with float64
    thresholds: its graph takes float64 and carries the exact thresholds.
    """
    if library_of(model) is not None:
        return _booster_bytes(model)
    if not isinstance(model, CONVERTIBLE):
        raise UnsupportedModelError(f"{type(model).__name__} has no ONNX conversion here")
    if getattr(model, "is_categorical_", None) is not None:
        raise UnsupportedModelError(f"{type(model).__name__} with native categorical features")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    histogram = isinstance(model, HistGradientBoostingClassifier | HistGradientBoostingRegressor)
    tensor = DoubleTensorType if histogram else FloatTensorType
    options = {id(model): {"zipmap": False}} if hasattr(model, "classes_") else None
    with warnings.catch_warnings():
        # skl2onnx writes HistGradientBoosting's boolean missing-value flags as ints;
        # protobuf 6 warns that 7 will refuse them (hence protobuf<7 in our dependencies).
        warnings.filterwarnings("ignore", "Field onnx.AttributeProto", DeprecationWarning)
        graph = convert_sklearn(
            model,
            initial_types=[(INPUT_NAME, tensor([None, int(model.n_features_in_)]))],
            options=options,
        )
    if histogram:
        _use_exact_thresholds(graph, model)
    elif isinstance(model, FORESTS):
        _route_missing_as_fitted(graph, model)
    if hasattr(model, "classes_"):
        _normalise_probabilities(graph)
    data: bytes = graph.SerializeToString()
    return data


def _booster_bytes(model: Any) -> bytes:
    converted = booster_graph(model)
    graph = converted.graph
    if converted.thresholds is not None:
        _replace_thresholds(graph, converted.thresholds)
    if hasattr(model, "predict_proba"):
        _normalise_probabilities(graph)
    data: bytes = graph.SerializeToString()
    return data


def _normalise_probabilities(graph: Any) -> None:
    """Divide the probabilities by their row sum inside the graph.

    A forest's leaf weights are float32 (ten trees' 0.1f add up to 1.0000001), so a
    certain class would come out above 1. Renormalised, it is exactly 1.0 and rows
    are distributions, as scikit-learn's are; in the graph this costs ~3 µs a call,
    where numpy's sum and divide on a tiny array cost ~10 µs (measured here).
    """
    from onnx import TensorProto, helper

    raw = "unnormalised_probabilities"
    for node in graph.graph.node:
        for i, name in enumerate(node.output):
            if name == PROBABILITIES:
                node.output[i] = raw
    opset = max(o.version for o in graph.opset_import if o.domain in {"", "ai.onnx"})
    if opset >= 13:
        graph.graph.initializer.append(
            helper.make_tensor("probability_axes", TensorProto.INT64, [1], [1])
        )
        total = helper.make_node(
            "ReduceSum", [raw, "probability_axes"], ["probability_total"], keepdims=1
        )
    else:
        total = helper.make_node("ReduceSum", [raw], ["probability_total"], axes=[1], keepdims=1)
    graph.graph.node.extend(
        [total, helper.make_node("Div", [raw, "probability_total"], [PROBABILITIES])]
    )


def _route_missing_as_fitted(graph: Any, model: Any) -> None:
    """Send a missing value down the branch each of the forest's trees sends it.

    scikit-learn's trees learn, per split, whether NaN goes left
    (`tree_.missing_go_to_left`); skl2onnx leaves every node's
    `nodes_missing_value_tracks_true` at 0, so ONNX Runtime would send NaN right
    (`NaN <= t` is false) wherever the tree learnt left. Left is the true branch.
    """
    from onnx import helper

    [node] = [n for n in graph.graph.node if n.op_type.startswith("TreeEnsemble")]
    attributes = {a.name: a for a in node.attribute}
    # skl2onnx numbers trees by their index in estimators_, nodes by their index in tree_.
    left = [np.asarray(tree.tree_.missing_go_to_left) for tree in model.estimators_]
    routes = [
        int(mode == b"BRANCH_LEQ" and left[tree][node_id])
        for tree, node_id, mode in zip(
            attributes["nodes_treeids"].ints,
            attributes["nodes_nodeids"].ints,
            attributes["nodes_modes"].strings,
            strict=True,
        )
    ]
    name = "nodes_missing_value_tracks_true"
    if name in attributes:
        node.attribute.remove(attributes[name])
    node.attribute.append(helper.make_attribute(name, routes))


def _use_exact_thresholds(graph: Any, model: Any) -> None:
    """Give the tree node the float64 thresholds HistGradientBoosting compares with.

    skl2onnx stores thresholds as float32 (`nodes_values`), so a value within float32
    rounding of a split (real data has them: diabetes' s5 has values 4e-17 apart) goes
    the other way. ai.onnx.ml 3 takes them as a double tensor; ONNX Runtime then
    compares float64 input with float64 thresholds and sums the leaves into a float32
    output (declared so: it does not emit float64 there).
    """
    [node] = [n for n in graph.graph.node if n.op_type.startswith("TreeEnsemble")]
    attributes = {a.name: a for a in node.attribute}
    # skl2onnx numbers trees iteration-major (iteration * classes + class) and nodes
    # by their index in the predictor: the same order as this flattening.
    trees = [tree for iteration in model._predictors for tree in iteration]
    exact = np.array(
        [
            trees[tree].nodes["num_threshold"][node_id] if mode == b"BRANCH_LEQ" else 0.0
            for tree, node_id, mode in zip(
                attributes["nodes_treeids"].ints,
                attributes["nodes_nodeids"].ints,
                attributes["nodes_modes"].strings,
                strict=True,
            )
        ],
        dtype=np.float64,
    )
    _replace_thresholds(graph, exact)


def _replace_thresholds(graph: Any, exact: npt.NDArray[np.float64]) -> None:
    """Swap the tree node's float32 thresholds for `exact` (one per node, leaves 0).

    `exact` must round to the thresholds stored: that checks it lines up with the nodes.
    """
    from onnx import TensorProto, helper, numpy_helper

    [node] = [n for n in graph.graph.node if n.op_type.startswith("TreeEnsemble")]
    attributes = {a.name: a for a in node.attribute}
    stored = np.asarray(attributes["nodes_values"].floats, dtype=np.float32)
    if not np.array_equal(exact.astype(np.float32), stored):
        raise UnsupportedModelError("ONNX tree nodes do not line up with the model's splits")
    node.attribute.remove(attributes["nodes_values"])
    node.attribute.append(
        helper.make_attribute("nodes_values_as_tensor", numpy_helper.from_array(exact))
    )
    for opset in graph.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, 3)
    for output in graph.graph.output:
        if output.type.tensor_type.elem_type == TensorProto.DOUBLE:
            output.type.tensor_type.elem_type = TensorProto.FLOAT


class OnnxScorer:
    """One ONNX Runtime session: float64 rows in, float64 probabilities or values out."""

    def __init__(self, graph: bytes, *, classifier: bool) -> None:
        # ORT writes its warnings straight to stderr with colour codes, outside our log
        # format: at import, one about the telemetry ID it cannot store under a read-only
        # HOME (as in the image). No telemetry, and errors only; its failures still raise.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
        options = ort.SessionOptions()
        # The service scales with processes; a thread pool per session would oversubscribe.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        outputs = session.get_outputs()
        inputs = session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise UnsupportedModelError(
                f"ONNX graph inputs {[i.name for i in inputs]}, expected [X]"
            )
        # skl2onnx classifiers: (label, probabilities); regressors: (variable).
        self._outputs = [outputs[1 if classifier else 0].name]
        if classifier and self._outputs != [PROBABILITIES]:
            raise UnsupportedModelError(f"ONNX graph outputs {[o.name for o in outputs]}")
        self._dtype = np.float64 if inputs[0].type == "tensor(double)" else np.float32
        self._session = session
        self._run = _fast_run(session)

    def scores(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Probabilities [rows, classes] (classifier) or values [rows, 1], as float64."""
        result = self._run(self._outputs, {INPUT_NAME: np.ascontiguousarray(x, self._dtype)}, None)
        return np.asarray(result[0], dtype=np.float64)


def _fast_run(session: Any) -> Callable[..., list[Any]]:
    # InferenceSession.run re-checks input names and OrtValue ownership on every call
    # (~2-4 µs); our feed is always the one pre-checked input name and a numpy array,
    # so call the C++ session directly when this onnxruntime exposes it.
    inner = getattr(session, "_sess", None)
    run = getattr(inner, "run", None)
    if callable(run):
        return run  # type: ignore[no-any-return]
    return session.run  # type: ignore[no-any-return]
