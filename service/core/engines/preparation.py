"""The preprocessing our training exports, re-evaluated in float64 numpy.

A fitted pipeline's steps before its final estimator (imputers, scaler, one-hot
encoder, a ColumnTransformer that routes columns to them) become a `Preparer`:
a chain of small array functions that compute exactly what scikit-learn's
`transform` computes (the same float64 operations in the same order), without
its per-call input validation. Anything else is `UnsupportedModelError`.

A model fitted on a DataFrame does not see validated rows as they are: the service
hands it the frame `tabserve.artifact.frames` builds, where a missing category is
NaN (not None), a bool column holds booleans and a `category` column its own
values. `frame_values` makes the compiled preparation start from those same values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from tabserve.artifact.manifest import Feature

Array = npt.NDArray[Any]
Step = Callable[[Array], Array]
_NONE = np.array(None, dtype=object)


class UnsupportedModelError(Exception):
    """The model cannot be compiled; the message says which part and why."""


class Preparer:
    """Raw validated rows -> the float64 matrix the final estimator takes."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = tuple(steps)
        self.identity = not self._steps

    def __call__(self, features: Array) -> npt.NDArray[np.float64]:
        """Apply every step; numeric input passes through untouched when there are none."""
        out = features
        for step in self._steps:
            out = step(out)
        return np.asarray(out, dtype=np.float64)


def split_pipeline(model: Any, frame: Sequence[Feature] | None = None) -> tuple[Preparer, Any]:
    """`(preparer, final estimator)` for a fitted estimator or pipeline of supported steps.

    `frame`: the features of a model fitted on a DataFrame (`estimator.input` is
    `frame`); the preparer then starts from the values that frame holds.
    """
    *transformers, final = _flatten(model)
    steps = [_compile_transformer(t) for t in transformers]
    first = frame_values(frame) if frame is not None else None
    return Preparer(steps if first is None else [first, *steps]), final


def frame_values(features: Sequence[Feature]) -> Step | None:
    """Validated rows -> the values `FrameBuilder`'s DataFrame holds, column by column.

    None when they are the same (numbers only): numbers stay float64 either way.
    """
    lookups: list[tuple[int, dict[Any, Any]]] = []
    for i, feature in enumerate(features):
        if feature.type != "category":
            continue
        dtype = feature.dtype
        # A missing category is NaN in the frame: what imputers and encoders look for.
        lookup: dict[Any, Any] = {None: math.nan}
        if dtype is not None and dtype.name == "category":
            lookup.update({str(c): c for c in dtype.categories or []})
        elif dtype is not None and dtype.name in {"bool", "boolean"}:
            lookup.update({"True": True, "False": False})
        lookups.append((i, lookup))
    if not lookups:
        return None

    def as_in_frame(x: Array) -> Array:
        x = np.array(x, dtype=object)
        for i, lookup in lookups:
            x[:, i] = [lookup.get(v, v) for v in x[:, i].tolist()]
        return x

    return as_in_frame


def _flatten(model: Any) -> list[Any]:
    if isinstance(model, Pipeline):
        flat: list[Any] = []
        for _, step in model.steps:
            if step is None or step == "passthrough":
                continue
            flat.extend(_flatten(step))
        return flat
    return [model]


def _compile_transformer(transformer: Any) -> Step:
    if isinstance(transformer, ColumnTransformer):
        return _column_transformer(transformer)
    steps = _flatten(transformer)
    *imputers, last = steps
    if isinstance(last, OneHotEncoder) and all(_fusable(i) for i in imputers):
        return _one_hot(last, _missing_fills(imputers, len(last.categories_)))
    return _chain([_numeric_or_categorical(t) for t in steps])


def _chain(chain: Sequence[Step]) -> Step:
    if len(chain) == 1:
        return chain[0]

    def run(x: Array) -> Array:
        for step in chain:
            x = step(x)
        return x

    return run


def _numeric_or_categorical(transformer: Any) -> Step:
    if isinstance(transformer, SimpleImputer):
        return _imputer(transformer)
    if isinstance(transformer, StandardScaler):
        return _scaler(transformer)
    if isinstance(transformer, OneHotEncoder):
        return _one_hot(transformer)
    raise UnsupportedModelError(f"preprocessing step {type(transformer).__name__} is not supported")


def _imputer(imputer: SimpleImputer) -> Step:
    if imputer.add_indicator:
        raise UnsupportedModelError("SimpleImputer(add_indicator=True) is not supported")
    statistics = np.asarray(imputer.statistics_)
    if imputer.missing_values is None or statistics.dtype.kind in "OUS":
        # Categories: None, or NaN in an object column, becomes the fill value.
        fill = statistics.astype(object)
        find = (lambda x: np.equal(x, _NONE)) if imputer.missing_values is None else _nan_objects

        def impute_objects(x: Array) -> Array:
            x = np.array(x, dtype=object)
            missing = find(x)
            if missing.any():
                x[missing] = np.broadcast_to(fill, x.shape)[missing]
            return x

        return impute_objects
    if not _is_nan(imputer.missing_values):
        raise UnsupportedModelError(f"SimpleImputer(missing_values={imputer.missing_values!r})")
    values = statistics.astype(np.float64)
    if np.isnan(values).any():
        # scikit-learn drops columns that were empty at fit time: the width would change.
        raise UnsupportedModelError("SimpleImputer with a column that was empty when fitted")

    def impute_nan(x: Array) -> Array:
        x = np.asarray(x, dtype=np.float64)
        missing = np.isnan(x)
        return np.where(missing, values, x) if missing.any() else x

    return impute_nan


def _scaler(scaler: StandardScaler) -> Step:
    mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
    scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None

    def standardize(x: Array) -> Array:
        # Same operations, same order as StandardScaler.transform: bit-identical results.
        x = np.asarray(x, dtype=np.float64)
        if mean is not None:
            x = x - mean
        if scale is not None:
            x = x / scale
        return x

    return standardize


def _one_hot(encoder: OneHotEncoder, fills: Sequence[tuple[Any, Any]] | None = None) -> Step:
    """One-hot encoding; `fills[j]` is what None and NaN in column j become before it."""
    if encoder.drop_idx_ is not None:
        raise UnsupportedModelError(f"OneHotEncoder(drop={encoder.drop!r}) is not supported")
    if getattr(encoder, "_infrequent_enabled", False):
        raise UnsupportedModelError("OneHotEncoder with infrequent categories is not supported")
    ignore = encoder.handle_unknown in {"ignore", "infrequent_if_exist"}
    # One dict per input column: category -> its output column (offset included).
    lookups: list[dict[Any, int]] = []
    # NaN cannot be a dict key (NaN != NaN): its output column per input column.
    nan_codes: list[int] = []
    width = 0
    for j, categories in enumerate(encoder.categories_):
        values = list(categories.tolist())
        if any(v is None for v in values):
            raise UnsupportedModelError("OneHotEncoder with None among its categories")
        # Fitted on a column with NaN, the encoder has a NaN category (sorted last): a
        # missing value gets its own column, found by position since NaN != NaN.
        nan_column = next((width + i for i, v in enumerate(values) if _is_nan(v)), -1)
        lookup = {v: width + i for i, v in enumerate(values) if not _is_nan(v)}
        none_fill, nan_fill = fills[j] if fills is not None else (None, math.nan)
        if _is_nan(nan_fill):
            nan_codes.append(nan_column)
        else:
            nan_codes.append(-1 if nan_fill is None else lookup.get(nan_fill, -1))
        if not _is_missing(none_fill) and none_fill in lookup:
            lookup[None] = lookup[none_fill]
        lookups.append(lookup)
        width += len(values)

    def encode(x: Array) -> Array:
        rows = x.shape[0]
        out = np.zeros((rows, width), dtype=np.float64)
        every_row = np.arange(rows)
        for j, lookup in enumerate(lookups):
            # map(dict.get) over a list is the fastest lookup numpy offers for objects.
            codes = np.fromiter(
                map(lookup.get, x[:, j].tolist(), repeat(-1, rows)), dtype=np.intp, count=rows
            )
            if codes.min(initial=0) >= 0:
                out[every_row, codes] = 1.0
                continue
            unknown = codes < 0
            if nan_codes[j] >= 0:
                codes[unknown & _nan_objects(x[:, j])] = nan_codes[j]
                unknown = codes < 0
            if not ignore:
                bad = x[int(np.argmax(unknown)), j]
                raise ValueError(f"unknown category {bad!r} in one-hot column {j}")
            out[every_row[~unknown], codes[~unknown]] = 1.0
        return out

    return encode


def _fusable(step: Any) -> bool:
    """A SimpleImputer of None or NaN that can fold into the one-hot lookup after it."""
    return (
        isinstance(step, SimpleImputer)
        and not step.add_indicator
        and (step.missing_values is None or _is_nan(step.missing_values))
    )


def _missing_fills(imputers: Sequence[SimpleImputer], columns: int) -> list[tuple[Any, Any]]:
    """Per column, what None and NaN have become after `imputers` ran in order."""
    fills: list[list[Any]] = [[None, math.nan] for _ in range(columns)]
    for imputer in imputers:
        statistics = np.asarray(imputer.statistics_).tolist()
        for column, current in enumerate(fills):
            for k, value in enumerate(current):
                hit = value is None if imputer.missing_values is None else _is_nan(value)
                if hit:
                    current[k] = statistics[column]
    return [(none, nan) for none, nan in fills]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _is_missing(value: Any) -> bool:
    return value is None or _is_nan(value)


_is_nan_each = np.frompyfunc(_is_nan, 1, 1)


def _nan_objects(x: Array) -> npt.NDArray[np.bool_]:
    """Where an object array holds a float NaN."""
    return np.asarray(_is_nan_each(x), dtype=bool)


def _column_transformer(transformer: ColumnTransformer) -> Step:
    width_in = transformer.n_features_in_
    branches: list[tuple[slice | npt.NDArray[np.intp], Step | None]] = []
    for name, inner, columns in transformer.transformers_:
        if isinstance(inner, str) and inner == "drop":
            continue
        index = _column_index(_by_position(columns, transformer), width_in, name)
        if index.size == 0:
            continue
        branch = None if _is_passthrough(inner) else _compile_transformer(inner)
        branches.append((_as_slice(index), branch))

    def route(x: Array) -> Array:
        parts = []
        for index, branch in branches:
            selected = x[:, index]
            parts.append(
                np.asarray(selected, dtype=np.float64) if branch is None else branch(selected)
            )
        return np.hstack(parts) if len(parts) != 1 else parts[0]

    return route


def _as_slice(index: npt.NDArray[np.intp]) -> slice | npt.NDArray[np.intp]:
    # Adjacent columns as a slice: a view, where a fancy index would copy every value.
    start = int(index[0])
    if np.array_equal(index, np.arange(start, start + index.size)):
        return slice(start, start + index.size)
    return index


def _is_passthrough(transformer: Any) -> bool:
    # A fitted ColumnTransformer holds "passthrough" as an identity FunctionTransformer.
    if isinstance(transformer, str):
        return transformer == "passthrough"
    return (
        isinstance(transformer, FunctionTransformer)
        and transformer.func is None
        and not transformer.validate
    )


def _by_position(columns: Any, transformer: ColumnTransformer) -> Any:
    """Column names (a transformer fitted on a DataFrame) as positions in its input."""
    fitted = getattr(transformer, "feature_names_in_", None)
    if fitted is None or not isinstance(columns, list) or not columns:
        return columns
    position = {str(n): i for i, n in enumerate(fitted)}
    if not all(isinstance(c, str) and c in position for c in columns):
        return columns
    return [position[c] for c in columns]


def _column_index(columns: Any, width: int, name: str) -> npt.NDArray[np.intp]:
    everything = np.arange(width)
    try:
        selected = everything[columns]
    except (IndexError, TypeError, ValueError) as exc:
        raise UnsupportedModelError(
            f"ColumnTransformer branch {name!r} selects columns by {columns!r}; "
            "only positions, slices or masks are supported"
        ) from exc
    return np.atleast_1d(selected).astype(np.intp)
