"""XGBoost, LightGBM and CatBoost estimators as ONNX graphs, and their split thresholds.

The three libraries are optional extras, imported only when one of their models is
converted (a model's class names its library, so nothing is imported to tell).

- XGBoost and LightGBM convert with onnxmltools' converters, registered with
  skl2onnx so `convert_sklearn` handles them as it handles scikit-learn's own
  estimators. XGBoost compares `float32(x) < threshold` with float32 thresholds: its
  graph takes float32 and decides every split as XGBoost does. LightGBM compares
  float64 features with float64 thresholds, like HistGradientBoosting: its graph
  takes float64 and gets the exact thresholds (`BoosterGraph.thresholds`).
- CatBoost exports ONNX itself (`save_model(format="onnx")`); its borders are float32
  and its features are compared as float32, so its graph takes float32. The export
  ends in a ZipMap (a list of dicts per row), which is removed so the graph answers
  with a probability matrix like the others.

A classifier trained by `tabserve train --model xgboost` is wrapped in
`LabelEncodedClassifier` (XGBoost takes only labels 0..n-1); its probabilities are
those of the estimator inside, which is what gets converted.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tabserve.artifact.label_encoding import LabelEncodedClassifier
from tabserve.service.core.engines.preparation import UnsupportedModelError

Library = Literal["xgboost", "lightgbm", "catboost"]
LIBRARIES: tuple[Library, ...] = ("xgboost", "lightgbm", "catboost")
COMPILED: dict[Library, tuple[str, ...]] = {
    "xgboost": ("XGBClassifier", "XGBRegressor"),
    "lightgbm": ("LGBMClassifier", "LGBMRegressor"),
    "catboost": ("CatBoostClassifier", "CatBoostRegressor"),
}
INPUT_NAME = "X"
PROBABILITIES = "probabilities"
DEFAULT_DOMAIN_OPSET = 13
# CatBoost lists borders beyond float32's range (where no value can split): no probes there.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class BoosterGraph:
    """A converted graph (an `onnx.ModelProto`, input `X`, outputs as skl2onnx names them).

    `thresholds` holds, for LightGBM, the float64 threshold of each node of the graph's
    tree-ensemble node, leaves 0 (None for the others: float32 is exact for them).
    """

    graph: Any
    thresholds: npt.NDArray[np.float64] | None = None


def unwrapped(model: Any) -> Any:
    """The estimator that scores: the one inside `LabelEncodedClassifier`, else `model`."""
    if isinstance(model, LabelEncodedClassifier):
        return getattr(model, "estimator_", model.estimator)  # fitted, else as configured
    return model


def library_of(model: Any) -> Library | None:
    """The library of `model` (or the estimator it wraps) if it is one we compile.

    That is one of `COMPILED` or a subclass; the libraries' other models (rankers,
    boosters used without the scikit-learn API) are not compiled.
    """
    for cls in type(unwrapped(model)).__mro__:
        root = cls.__module__.split(".")[0]
        for library in LIBRARIES:
            if root == library and cls.__name__ in COMPILED[library]:
                return library
    return None


def booster_versions(model: Any) -> dict[str, str]:
    """Versions that decide what converting `model` produces (empty: not a booster)."""
    library = library_of(model)
    if library is None:
        return {}
    versions: dict[str, str] = {library: _version(library)}
    if library != "catboost":
        versions["onnxmltools"] = _version("onnxmltools")
    return versions


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"  # conversion then says which extra to install


def booster_graph(model: Any) -> BoosterGraph:
    """The ONNX graph of a fitted XGBoost, LightGBM or CatBoost estimator."""
    inner = unwrapped(model)
    library = library_of(inner)
    if library == "catboost":
        return BoosterGraph(_catboost_graph(inner))
    if library is None:
        raise UnsupportedModelError(f"{type(inner).__name__} is not a boosting-library model")
    try:
        _register_converter(inner, library)
    except ImportError as exc:
        raise UnsupportedModelError(
            f"{type(inner).__name__} needs onnxmltools to compile: "
            f"pip install 'tabserve[{library}]'"
        ) from exc
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    lightgbm = library == "lightgbm"
    tensor = DoubleTensorType if lightgbm else FloatTensorType
    classifier = hasattr(inner, "predict_proba")
    graph = convert_sklearn(
        inner,
        initial_types=[(INPUT_NAME, tensor([None, int(inner.n_features_in_)]))],
        options={id(inner): {"zipmap": False}} if classifier else None,
        # onnxmltools writes its tree nodes for ai.onnx.ml 3 (float attributes).
        target_opset={"": get_latest_tested_opset_version(), "ai.onnx.ml": 3},
    )
    return BoosterGraph(graph, _lightgbm_thresholds(graph, inner) if lightgbm else None)


def _register_converter(model: Any, library: Library) -> None:
    """Teach skl2onnx onnxmltools' converter for `type(model)` (subclasses included)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    converter: Any
    if library == "xgboost":
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        converter = convert_xgboost
    else:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        converter = convert_lightgbm
    cls = type(model)
    if hasattr(model, "predict_proba"):
        shapes: Any = calculate_linear_classifier_output_shapes
        options: dict[str, Any] = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    else:
        shapes, options = calculate_linear_regressor_output_shapes, {"split": None}
    update_registered_converter(cls, f"{library}{cls.__name__}", shapes, converter, options=options)


def _lightgbm_thresholds(graph: Any, model: Any) -> npt.NDArray[np.float64]:
    """LightGBM's float64 threshold for each node of the graph's tree node (leaves: 0).

    Each ONNX tree is walked from its root beside LightGBM's dump of the same tree
    (true branch = left child), so the pairing does not depend on the order the
    converter wrote the nodes in; a node whose feature differs is refused. The dump
    writes thresholds with 17 significant digits: they are LightGBM's doubles.
    """
    [node] = [n for n in graph.graph.node if n.op_type.startswith("TreeEnsemble")]
    attributes = {a.name: a for a in node.attribute}
    tree_ids = list(attributes["nodes_treeids"].ints)
    node_ids = list(attributes["nodes_nodeids"].ints)
    where = {(t, n): i for i, (t, n) in enumerate(zip(tree_ids, node_ids, strict=True))}
    features = attributes["nodes_featureids"].ints
    true_ids = attributes["nodes_truenodeids"].ints
    false_ids = attributes["nodes_falsenodeids"].ints
    modes = attributes["nodes_modes"].strings
    exact = np.zeros(len(node_ids), dtype=np.float64)
    roots: dict[int, int] = {}
    for tree_id, node_id in zip(tree_ids, node_ids, strict=True):
        roots[tree_id] = min(node_id, roots.get(tree_id, node_id))
    for tree_id, tree in enumerate(model.booster_.dump_model()["tree_info"]):
        pending = [(where[tree_id, roots[tree_id]], tree["tree_structure"])]
        while pending:
            index, dumped = pending.pop()
            if "split_feature" not in dumped:
                continue
            if dumped.get("decision_type") != "<=" or modes[index] != b"BRANCH_LEQ":
                raise UnsupportedModelError("LightGBM categorical splits are not supported")
            if features[index] != dumped["split_feature"]:
                raise UnsupportedModelError("ONNX tree nodes do not line up with LightGBM's")
            exact[index] = float(dumped["threshold"])
            pending.append((where[tree_id, true_ids[index]], dumped["left_child"]))
            pending.append((where[tree_id, false_ids[index]], dumped["right_child"]))
    return exact


def _lightgbm_branches(model: Any) -> Iterator[dict[str, Any]]:
    """The branch nodes of LightGBM's dump: trees in turn, each walked pre-order, left first."""
    for tree in model.booster_.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                yield node
                stack += [node["right_child"], node["left_child"]]


def _catboost_graph(model: Any) -> Any:
    """CatBoost's own export, input renamed `X`, ZipMap removed, output shapes declared."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="tabserve-catboost-") as folder:
        path = Path(folder) / "model.onnx"
        try:
            model.save_model(str(path), format="onnx")
        except Exception as exc:  # CatBoostError: e.g. categorical or text features
            raise UnsupportedModelError(f"CatBoost ONNX export: {exc}") from exc
        graph = onnx.load(str(path))
    _rename_input(graph)
    if hasattr(model, "predict_proba"):
        _drop_zipmap(graph, model)
        _import_default_domain(graph)
    else:
        [output] = graph.graph.output
        _declare_matrix(output, columns=1)
    return graph


def _rename_input(graph: Any) -> None:
    [given] = graph.graph.input
    old = given.name
    given.name = INPUT_NAME
    for node in graph.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = INPUT_NAME


def _drop_zipmap(graph: Any, model: Any) -> None:
    """Make the probability tensor before the ZipMap the graph's `probabilities` output."""
    from onnx import TensorProto, helper

    [zipmap] = [n for n in graph.graph.node if n.op_type == "ZipMap"]
    [tree] = [n for n in graph.graph.node if n.op_type == "TreeEnsembleClassifier"]
    attributes = {a.name: a for a in tree.attribute}
    if "classlabels_strings" in attributes:
        labels: list[Any] = [s.decode() for s in attributes["classlabels_strings"].strings]
    else:
        labels = list(attributes["classlabels_int64s"].ints)
    if [str(c) for c in labels] != [str(c) for c in np.asarray(model.classes_).tolist()]:
        raise UnsupportedModelError(
            f"CatBoost ONNX classes {labels} are not the model's classes_ in order"
        )
    raw = zipmap.input[0]
    graph.graph.node.remove(zipmap)
    for node in graph.graph.node:
        for i, name in enumerate(node.output):
            if name == raw:
                node.output[i] = PROBABILITIES
    [output] = [o for o in graph.graph.output if o.name == zipmap.output[0]]
    index = list(graph.graph.output).index(output)
    replacement = helper.make_tensor_value_info(
        PROBABILITIES, TensorProto.FLOAT, [None, len(labels)]
    )
    graph.graph.output.remove(output)
    graph.graph.output.insert(index, replacement)


def _import_default_domain(graph: Any) -> None:
    """CatBoost's graph uses only ai.onnx.ml; renormalising adds standard operators."""
    from onnx import helper

    if not any(o.domain in {"", "ai.onnx"} for o in graph.opset_import):
        graph.opset_import.append(helper.make_opsetid("", DEFAULT_DOMAIN_OPSET))
        graph.ir_version = max(graph.ir_version, 7)  # what opset 13 requires


def _declare_matrix(output: Any, columns: int) -> None:
    """Declare `output` as [rows, columns]: CatBoost says [rows], ONNX Runtime warns per call."""
    shape = output.type.tensor_type.shape
    del shape.dim[:]
    shape.dim.add().dim_param = "N"
    shape.dim.add().dim_value = columns


def booster_splits(model: Any) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]] | None:
    """Every split (feature, threshold) of a booster's trees; None if not a booster."""
    inner = unwrapped(model)
    library = library_of(inner)
    if library == "xgboost":
        return _xgboost_splits(inner)
    if library == "lightgbm":
        return _lightgbm_splits(inner)
    if library == "catboost":
        borders = inner.get_borders()
        features = [f for f, values in borders.items() for _ in values]
        thresholds = [t for values in borders.values() for t in values]
        return _finite(np.asarray(features, dtype=np.intp), np.asarray(thresholds, np.float64))
    return None


def _finite(
    features: npt.NDArray[np.intp], thresholds: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    keep = np.abs(thresholds) < FLOAT32_MAX
    return features[keep], thresholds[keep]


def _xgboost_splits(model: Any) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    saved = json.loads(bytes(model.get_booster().save_raw("json")))
    features: list[int] = []
    thresholds: list[float] = []
    for tree in saved["learner"]["gradient_booster"]["model"]["trees"]:
        inner = np.asarray(tree["left_children"]) >= 0
        features += np.asarray(tree["split_indices"])[inner].tolist()
        thresholds += np.asarray(tree["split_conditions"])[inner].tolist()
    return np.asarray(features, dtype=np.intp), np.asarray(thresholds, dtype=np.float64)


def _lightgbm_splits(model: Any) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    branches = list(_lightgbm_branches(model))
    features = [int(node["split_feature"]) for node in branches]
    thresholds = [float(node["threshold"]) for node in branches]
    return np.asarray(features, dtype=np.intp), np.asarray(thresholds, dtype=np.float64)
