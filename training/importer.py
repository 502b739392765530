"""`tabserve import`: a model file or an MLflow model made elsewhere becomes a served version.

A model file is a joblib or pickle file (any extension; loading one runs code, so import
only files you trust) or a skops file (loaded with the same allow-list the service uses).
An MLflow model directory (an `MLmodel` file; sklearn, xgboost and lightgbm flavours) is
loaded with MLflow's own loader; its requirements give the library versions it was
saved with, checked against this environment before anything is written. The reference
sample (`--data`, CSV or Parquet) goes to `tabserve.export` like a notebook's DataFrame;
without it an MLflow model's `input_example` is the sample, and without either its
signature's named columns are the features (`signature_export`).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import joblib
from sklearn.exceptions import InconsistentVersionWarning

from tabserve.artifact import skops_format
from tabserve.artifact.errors import ArtifactError
from tabserve.artifact.libraries import LIBRARIES, OVERRIDE, compatible, installed_version
from tabserve.training.errors import ExportError
from tabserve.training.options import ALLOW_FLAG
from tabserve.training.signature_export import SignatureColumn

MLFLOW_FLAVOURS = {
    "sklearn": "mlflow.sklearn",
    "xgboost": "mlflow.xgboost",
    "lightgbm": "mlflow.lightgbm",
}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+)")
# MLflow column types -> (feature type, the pandas dtype the column had).
SIGNATURE_TYPES: dict[str, tuple[Literal["number", "category"], str]] = {
    "double": ("number", "float64"),
    "float": ("number", "float32"),
    "long": ("number", "int64"),
    "integer": ("number", "int32"),
    "string": ("category", "object"),
    "boolean": ("category", "bool"),
}


@dataclass(frozen=True)
class Imported:
    """A loaded model, its reference sample (or None) and where both came from."""

    model: Any
    sample: Any
    source: str
    signature: Any = None
    """An MLflow model's input signature (`mlflow.models.ModelSignature`), or None."""


def load_model_file(path: Path, *, allow_mismatch: bool) -> Any:
    """A model from a skops, joblib or pickle file, refused if pickled by another scikit-learn."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"{path}: cannot read the model file: {exc.strerror or exc}") from exc
    if data[:2] == b"PK":  # a zip: skops
        try:
            return skops_format.load(data, str(path), sorted(skops_format.ALLOWED_TYPES))
        except ArtifactError as exc:
            raise ExportError(str(exc)) from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if allow_mismatch else "error", InconsistentVersionWarning)
        try:
            return joblib.load(io.BytesIO(data))
        except InconsistentVersionWarning as exc:
            raise ExportError(
                _skew(
                    str(path),
                    "scikit-learn",
                    exc.original_sklearn_version,
                    exc.current_sklearn_version,
                )
            ) from exc
        except Exception as exc:
            raise ExportError(
                f"{path}: not a model file tabserve can read (joblib, pickle or skops): "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def read_sample(path: Path, target: str | None) -> tuple[Any, Any]:
    """`(X, y)` from a CSV or Parquet file; `y` is the `target` column (None without one)."""
    import pandas as pd

    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except FileNotFoundError as exc:
        raise ExportError(f"{path}: data file not found") from exc
    except Exception as exc:  # pandas' parser errors, pyarrow's
        raise ExportError(f"{path}: cannot read the data: {exc}") from exc
    if target is None:
        return frame, None
    if target not in frame.columns:
        columns = ", ".join(str(c) for c in frame.columns)
        raise ExportError(f"{path}: target column {target!r} not found; columns are: {columns}")
    return frame.drop(columns=[target]), frame[target]


def model_columns(model: Any, x: Any) -> tuple[Any, list[str]]:
    """`x` narrowed to the model's fitted columns, in its order, and the columns left out.

    A data file holds more than the features (ids, dates); the model says which it takes.
    A column it needs and the file lacks stays for `export` to name.
    """
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None:
        return x, []
    names = [str(n) for n in fitted]
    if not all(n in x.columns for n in names):
        return x, []
    return x[names], [str(c) for c in x.columns if c not in names]


def mlflow_requirements(folder: Path) -> dict[str, str]:
    """Pinned versions (`name==version`) in the model's requirements.txt, by name."""
    path = folder / "requirements.txt"
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _REQUIREMENT.match(line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def check_requirements(folder: Path, *, allow_mismatch: bool) -> None:
    """Refuse a model whose requirements pin a model library this environment differs from."""
    for library, version in mlflow_requirements(folder).items():
        if library not in LIBRARIES.values():
            continue
        installed = installed_version(library)
        if installed is None:
            raise ExportError(
                f"{folder}: the model was saved with {library} {version}, which is not installed "
                f"here; install it (pip install '{library}=={version}') and import again"
            )
        if not allow_mismatch and not compatible(library, version, installed):
            raise ExportError(_skew(str(folder), library, version, installed))


def load_mlflow(folder: Path, *, allow_mismatch: bool) -> Imported:
    """The model in an MLflow model directory, and its `input_example` (or None)."""
    try:
        from mlflow.models import Model
    except ImportError as exc:
        raise ExportError(
            f"{folder} is an MLflow model; importing it needs mlflow: pip install "
            "'tabserve[mlflow]'"
        ) from exc
    check_requirements(folder, allow_mismatch=allow_mismatch)
    meta = Model.load(str(folder))
    flavour = next((f for f in MLFLOW_FLAVOURS if f in meta.flavors), None)
    if flavour is None:
        raise ExportError(
            f"{folder}: MLflow flavours {', '.join(sorted(meta.flavors))}; tabserve imports "
            f"{', '.join(MLFLOW_FLAVOURS)}: log the model with one of them"
        )
    import importlib

    loader = importlib.import_module(MLFLOW_FLAVOURS[flavour])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if allow_mismatch else "error", InconsistentVersionWarning)
        try:
            model = loader.load_model(str(folder))
        except InconsistentVersionWarning as exc:
            raise ExportError(
                _skew(
                    str(folder),
                    "scikit-learn",
                    exc.original_sklearn_version,
                    exc.current_sklearn_version,
                )
            ) from exc
    example = meta.load_input_example(str(folder))
    return Imported(model, example, f"mlflow:{folder}", meta.signature)


def signature_columns(signature: Any, folder: Path) -> list[SignatureColumn]:
    """The named columns of an MLflow signature, refused when it has none tabserve can check."""
    if signature is None or signature.inputs is None:
        raise ExportError(
            f"{folder}: the MLflow model has neither an input_example nor a signature; pass "
            "--data FILE, a sample of its training data"
        )
    if signature.inputs.is_tensor_spec():
        raise ExportError(
            f"{folder}: the MLflow signature describes tensors, not named columns; pass "
            "--data FILE, a sample of its training data"
        )
    columns = []
    for spec in signature.inputs.inputs:
        kind = getattr(spec.type, "name", None)
        if spec.name is None or kind not in SIGNATURE_TYPES:
            raise ExportError(
                f"{folder}: signature column {spec.name!r} has MLflow type {kind or spec.type}; "
                f"without data tabserve validates {', '.join(SIGNATURE_TYPES)}: pass --data "
                "FILE, a sample of its training data"
            )
        feature, dtype = SIGNATURE_TYPES[kind]
        required = bool(getattr(spec, "required", True))
        columns.append(SignatureColumn(str(spec.name), feature, dtype, required))
    return columns


def is_mlflow_model(path: Path) -> bool:
    """Whether `path` is an MLflow model directory."""
    return path.is_dir() and (path / "MLmodel").is_file()


def _skew(source: str, library: str, made: str, here: str) -> str:
    return (
        f"{source}: made with {library} {made}, but this environment has {here}; a pickled "
        "model may fail or silently predict differently. Re-export it in the serving "
        f"environment (with {library} {here}), or pass {ALLOW_FLAG} here and set "
        f"{OVERRIDE} where it is served to accept the risk."
    )
