"""The reference sample of an exported model: its features, their types and statistics.

A model fitted elsewhere comes with a sample of its data (`X`): a pandas DataFrame, or
a numpy array when the model records its feature names. The features are the ones the
model was fitted on, in its order; each one's type comes from its dtype (numbers; or
categories: object, string, category and bool columns). The sample is also returned in
the form the service validates requests into, so export can check the model answers
the same when fed that way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tabserve.artifact.manifest import CategoryStats, ColumnDtype, Feature, NumericStats
from tabserve.training.errors import ExportError
from tabserve.training.profile import category_stats, numeric_stats

FIX_ORDER = "pass X[model.feature_names_in_]"


@dataclass(frozen=True)
class Reference:
    """The features of an exported model and its sample as the service would validate it."""

    features: list[Feature]
    rows: npt.NDArray[Any]
    """float64 when every feature is a number, else object: floats and strings (None missing)."""
    frame: bool
    """Whether the model was fitted on a DataFrame (and so takes one)."""


def reference_of(model: Any, x: Any) -> Reference:
    """Features, types, statistics and service-form rows of sample `x` for `model`."""
    fitted_names = _fitted_names(model)
    if _is_frame(x):
        typed = [_frame_column(str(n), x[n]) for n in _frame_names(x, fitted_names)]
    else:
        array = np.asarray(x)
        if fitted_names is None:
            raise ExportError(
                "X is a numpy array and the model records no feature names (it was fitted on "
                "an array): pass X as a pandas DataFrame with one named column per feature, "
                "in the order the model takes them"
            )
        _check_width(array, len(fitted_names))
        typed = [_array_column(n, array[:, i]) for i, n in enumerate(fitted_names)]
    _check_model_width(model, len(typed))
    if not typed or len(typed[0][1]) == 0:
        raise ExportError("X has no rows: pass a sample of the data the model was fitted on")
    features = [
        Feature(
            name=name,
            type=kind,
            stats=_stats(kind, values, dtype),
            dtype=dtype if fitted_names else None,
        )
        for name, values, kind, dtype in typed
    ]
    return Reference(features, _rows(typed), frame=fitted_names is not None)


def _is_frame(x: Any) -> bool:
    return hasattr(x, "columns") and hasattr(x, "dtypes") and hasattr(x, "iloc")


def _fitted_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def _frame_names(x: Any, fitted: list[str] | None) -> list[Any]:
    given = list(x.columns)
    if fitted is None:
        return given
    as_text = [str(c) for c in given]
    missing = [n for n in fitted if n not in as_text]
    if missing:
        raise ExportError(
            f"X lacks {_plural(missing, 'column')} {_names(missing)} that the model was fitted "
            f"on; pass the columns it was fitted on (model.feature_names_in_: {_names(fitted)})"
        )
    extra = [c for c in as_text if c not in fitted]
    if extra:
        raise ExportError(
            f"X has {_plural(extra, 'column')} {_names(extra)} that the model was not fitted on "
            f"(the target?); {FIX_ORDER}"
        )
    if as_text != fitted:
        at = next(i for i, (a, b) in enumerate(zip(as_text, fitted, strict=True)) if a != b)
        raise ExportError(
            f"X has its columns in another order than the model was fitted on: column {at} is "
            f"{as_text[at]!r} where the model expects {fitted[at]!r} (fitted order: "
            f"{_names(fitted)}); {FIX_ORDER}"
        )
    return given


def _check_width(array: npt.NDArray[Any], width: int) -> None:
    if array.ndim != 2 or array.shape[1] != width:
        raise ExportError(
            f"X has shape {list(array.shape)}; the model was fitted on {width} columns: "
            "pass a 2-D sample with one column per feature"
        )


def _check_model_width(model: Any, width: int) -> None:
    fitted = getattr(model, "n_features_in_", None)
    if isinstance(fitted, int | np.integer) and int(fitted) != width:
        raise ExportError(
            f"X has {width} columns; the model was fitted on {int(fitted)}: pass a sample "
            "with the columns it was fitted on"
        )


Typed = tuple[str, list[Any], str, ColumnDtype]


def _frame_column(name: str, series: Any) -> Typed:
    import pandas as pd

    dtype = series.dtype
    kind = pd.api.types
    if kind.is_bool_dtype(dtype):
        values = [None if _missing(v) else str(bool(v)) for v in series.tolist()]
        return name, values, "category", ColumnDtype(name=str(dtype))
    if isinstance(dtype, pd.CategoricalDtype):
        categories = [_plain(c) for c in dtype.categories.tolist()]
        values = [None if _missing(v) else str(v) for v in series.tolist()]
        return name, values, "category", ColumnDtype(name="category", categories=categories)
    if kind.is_numeric_dtype(dtype):
        numbers = pd.to_numeric(series).to_numpy(dtype=np.float64, na_value=np.nan)
        return name, numbers.tolist(), "number", ColumnDtype(name=str(dtype))
    if kind.is_object_dtype(dtype) or kind.is_string_dtype(dtype):
        return name, _strings(name, series.tolist()), "category", ColumnDtype(name=str(dtype))
    raise ExportError(
        f"column {name!r} has dtype {dtype}, which the service cannot send: use numbers, or "
        "strings, category or bool for categories"
    )


def _array_column(name: str, values: npt.NDArray[Any]) -> Typed:
    if values.dtype.kind in "fiu":
        numbers = values.astype(np.float64).tolist()
        return name, numbers, "number", ColumnDtype(name="float64")
    items = values.tolist()
    present = [v for v in items if not _missing(v)]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        numbers = [math.nan if _missing(v) else float(v) for v in items]
        return name, numbers, "number", ColumnDtype(name="float64")
    return name, _strings(name, items), "category", ColumnDtype(name="object")


def _strings(name: str, items: list[Any]) -> list[str | None]:
    """A categorical column's values; anything but a string would not survive the wire."""
    out: list[str | None] = []
    for row, value in enumerate(items):
        if _missing(value):
            out.append(None)
        elif isinstance(value, str):
            out.append(value)
        else:
            raise ExportError(
                f"column {name!r} holds {type(value).__name__} {value!r} (row {row}) among "
                "categories: requests send categories as strings, so the model would never see "
                f"it; convert the column before fitting (X[{name!r}].astype(str), or a number "
                "dtype) and fit again"
            )
    return out


def _stats(kind: str, values: list[Any], dtype: ColumnDtype) -> NumericStats | CategoryStats:
    if kind == "number":
        return numeric_stats(np.asarray(values, dtype=np.float64))
    stats = category_stats(np.asarray(values, dtype=object))
    declared = {str(c) for c in dtype.categories or []} - set(stats.categories)
    if not declared:
        return stats
    # A category dtype declares categories the sample may lack: the model knows them.
    counts = dict(zip(stats.categories, stats.frequencies, strict=True))
    categories = sorted([*stats.categories, *declared])
    return CategoryStats(
        count=stats.count,
        missing=stats.missing,
        categories=categories,
        frequencies=[counts.get(c, 0) for c in categories],
    )


def _rows(typed: list[Typed]) -> npt.NDArray[Any]:
    numeric = all(kind == "number" for _, _, kind, _ in typed)
    rows = np.empty((len(typed[0][1]), len(typed)), dtype=np.float64 if numeric else object)
    for i, (_, values, _, _) in enumerate(typed):
        rows[:, i] = values
    return rows


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return type(value).__name__ in {"NAType", "NaTType"}


def _plain(value: Any) -> str | int | float | bool:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _plural(items: list[Any], word: str) -> str:
    return word if len(items) == 1 else f"{word}s"
