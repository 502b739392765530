"""The skops artifact format: a model file whose loading runs no code.

A joblib file is a pickle: loading it runs whatever the file names, so it is only
as safe as its source. skops stores the object tree as data and builds only the
types it is told to trust. It trusts most scikit-learn estimators by default; the
few more our pipelines need are in `ALLOWED_TYPES`, fixed here in code. On load a
type is trusted only if it is in that list: what the manifest says the file needs
is compared with what the file holds, never obeyed.

Two of those types, the node stores of tree ensembles and of hist gradient
boosting, hold node and feature indices that scikit-learn follows without bounds
checks: a crafted file could make `predict` read outside its arrays. So every
loaded tree is checked (`check_trees`) before the model is handed out.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import skops
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.tree._tree import Tree

from tabserve.artifact.errors import ArtifactError

# Types beyond skops's defaults that our training pipelines need (`training.estimators`):
# dtypes of categorical columns, and the node stores of forests and hist gradient boosting.
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
)
# A skops file is a zip: what it may unpack to, whatever its size on disk.
MAX_UNPACKED_BYTES = 2 * 1024**3
# Meta-estimators whose parts see another number of columns than they do.
_WIDTH_CHANGING = (Pipeline, ColumnTransformer, FeatureUnion)
_MAX_DEPTH = 64


def version() -> str:
    """The skops version recorded in manifests."""
    return str(skops.__version__)


def dump(estimator: Any, path: Path) -> list[str]:
    """Write `estimator` to `path`; return the types it needs beyond skops's defaults.

    Refuses (before anything is published) an estimator the loader would refuse.
    """
    try:
        # Deflated: an uncompressed skops file of a forest is 8 times its pickle.
        skops.io.dump(estimator, path, compression=zipfile.ZIP_DEFLATED)
    except TypeError as exc:  # skops.io.exceptions.UnsupportedTypeException is a TypeError
        raise ArtifactError(f"cannot export in skops format: {exc}; use --format joblib") from exc
    needed = skops.io.get_untrusted_types(file=path)
    refused = sorted(set(needed) - ALLOWED_TYPES)
    if refused:
        raise ArtifactError(
            f"cannot export in skops format: the model holds {', '.join(refused)}, outside "
            "the types the loader allows (tabserve.artifact.skops_format.ALLOWED_TYPES); "
            "use --format joblib"
        )
    return sorted(needed)


def load(data: bytes, source: str, declared: list[str]) -> Any:
    """Build the estimator in `data` (a skops file), trusting only allowed types.

    `declared` is the manifest's `trusted_types`. A type the file holds outside the
    allow-list is refused whatever the manifest says; one it holds but the manifest
    does not declare means the two do not belong together, and is refused too.
    """
    _check_unpacked_size(data, source)
    try:
        found = set(skops.io.get_untrusted_types(data=data)) if data else set()
    except Exception as exc:  # a zip without a valid schema: BadZipFile, KeyError, ValueError...
        raise ArtifactError(f"{source}: not a readable skops file: {exc}") from exc
    refused = sorted(found - ALLOWED_TYPES)
    if refused:
        raise ArtifactError(
            f"{source}: the skops file holds type {', '.join(refused)}, which is not in the "
            f"allow-list ({', '.join(sorted(ALLOWED_TYPES))}) nor trusted by skops; "
            "refusing to load it"
        )
    undeclared = sorted(found - set(declared))
    if undeclared:
        raise ArtifactError(
            f"{source}: the skops file holds {', '.join(undeclared)}, which the manifest's "
            "artifact.trusted_types does not declare; the manifest does not describe this file"
        )
    try:
        estimator = skops.io.loads(data, trusted=sorted(found))
    except Exception as exc:
        raise ArtifactError(f"{source}: cannot load the skops file: {exc}") from exc
    check_trees(estimator, source)
    return estimator


def _check_unpacked_size(data: bytes, source: str) -> None:
    """Refuse a zip bomb: zipfile never inflates a member past its declared size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ArtifactError(f"{source}: not a readable skops file: {exc}") from exc
    if unpacked > MAX_UNPACKED_BYTES:
        raise ArtifactError(
            f"{source}: the skops file unpacks to {unpacked} bytes; the limit is "
            f"{MAX_UNPACKED_BYTES}; refusing what may be a zip bomb"
        )


def check_trees(estimator: Any, source: str) -> None:
    """Refuse trees whose node or feature indices point outside their arrays or the input."""
    for where, node, width in _trees(estimator, "model", (), 0):
        try:
            problem = _tree_problem(node, width)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            problem = f"unreadable tree ({exc})"
        if problem is not None:
            raise ArtifactError(f"{source}: {where}: {problem}; refusing to load a corrupt tree")


def _trees(
    obj: Any, where: str, widths: tuple[int, ...], depth: int
) -> Iterator[tuple[str, Tree | TreePredictor, int | None]]:
    """Every Tree / TreePredictor under `obj` with the narrowest input width it may see.

    `widths` holds the `n_features_in_` of the estimators above `obj` since the last
    meta-estimator that changes widths: an ensemble validates its input once and
    hands it to its trees unchecked, so a tree may index only below all of them.
    """
    if depth > _MAX_DEPTH:
        raise ArtifactError(f"{where}: the model is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(obj, Tree | TreePredictor):
        yield where, obj, min(widths) if widths else None
        return
    if isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            yield from _trees(item, f"{where}[{i}]", widths, depth + 1)
        return
    if isinstance(obj, dict):
        for key, item in obj.items():
            yield from _trees(item, f"{where}[{key!r}]", widths, depth + 1)
        return
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        for i, item in enumerate(obj.ravel()):
            yield from _trees(item, f"{where}[{i}]", widths, depth + 1)
        return
    if not hasattr(obj, "get_params"):
        return  # numbers, strings, numeric arrays, dtypes: nothing below
    width = getattr(obj, "n_features_in_", None)
    if isinstance(obj, _WIDTH_CHANGING):
        widths = ()  # its parts see their own widths, not its input's
    elif isinstance(width, int | np.integer):
        widths = (*widths, int(width))
    for name, item in vars(obj).items():
        yield from _trees(item, f"{where}.{name}", widths, depth + 1)


def _tree_problem(node: Tree | TreePredictor, width: int | None) -> str | None:
    if isinstance(node, Tree):
        # Leaves have both children -1 (TREE_LEAF); their feature is -2, never read.
        left = np.asarray(node.children_left)
        right = np.asarray(node.children_right)
        leaf = left == -1
        width = node.n_features if width is None else min(width, node.n_features)
        return _index_problem(left, right, np.asarray(node.feature), leaf, width)
    if width is None:
        return "a hist gradient boosting tree outside its estimator"
    nodes = node.nodes
    leaf = nodes["is_leaf"].astype(bool)
    problem = _index_problem(
        nodes["left"].astype(np.int64),
        nodes["right"].astype(np.int64),
        nodes["feature_idx"].astype(np.int64),
        leaf,
        width,
    )
    if problem is not None:
        return problem
    categorical = ~leaf & nodes["is_categorical"].astype(bool)
    bitsets = len(node.raw_left_cat_bitsets)
    if np.any(nodes["bitset_idx"][categorical] >= bitsets):
        return f"a categorical split names a bitset beyond the {bitsets} stored"
    return None


def _index_problem(
    left: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    feature: npt.NDArray[np.int64],
    leaf: npt.NDArray[np.bool_],
    width: int,
) -> str | None:
    """Children must come after their parent and inside the array (so walks end), and
    split features must be columns of the input."""
    count = len(left)
    if len(right) != count or len(feature) != count:
        return "node arrays of different lengths"
    inner = ~leaf
    index = np.arange(count)
    for side, children in (("left", left), ("right", right)):
        bad = inner & ((children <= index) | (children >= count))
        if bad.any():
            at = int(np.argmax(bad))
            return (
                f"node {at} has {side} child {int(children[at])}; expected a node after it "
                f"and below {count}"
            )
    bad = inner & ((feature < 0) | (feature >= width))
    if bad.any():
        at = int(np.argmax(bad))
        return f"node {at} splits on feature {int(feature[at])}; the input has {width} columns"
    return None
