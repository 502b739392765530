"""Validated rows -> the pandas DataFrame a model fitted on a DataFrame takes.

The service validates every request into one array in manifest order: float64 for
numbers (NaN = missing), strings for categories (None = missing). A model fitted on a
DataFrame (a `ColumnTransformer` that picks columns by name, a `category` dtype a
booster reads natively) needs that DataFrame back, with the dtypes it was fitted on:
the manifest's `Feature.dtype`. Export builds the same frame from its reference sample
and checks the model answers alike, so this is the one place that decides the form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tabserve.artifact.manifest import ColumnDtype, Feature

Column = Callable[[npt.NDArray[Any]], Any]


class FrameBuilder:
    """`builder(rows)`: a DataFrame with the feature names and dtypes the model was fitted on."""

    def __init__(self, features: Sequence[Feature]) -> None:
        self.names = [f.name for f in features]
        self._columns = [_column(f) for f in features]

    def __call__(self, rows: npt.NDArray[Any]) -> Any:
        """The rows (validated, in manifest order) as a DataFrame."""
        import pandas as pd

        columns = zip(self.names, self._columns, strict=True)
        data = {name: make(rows[:, i]) for i, (name, make) in enumerate(columns)}
        return pd.DataFrame(data, columns=self.names, copy=False)


def _column(feature: Feature) -> Column:
    dtype = feature.dtype or ColumnDtype(name="float64" if feature.type == "number" else "object")
    if feature.type == "number":
        return _numbers(dtype.name)
    if dtype.name == "category":
        return _categorical(dtype.categories or [])
    if dtype.name in {"bool", "boolean"}:
        return _booleans(dtype.name)
    return _strings(dtype.name)


def _numbers(name: str) -> Column:
    integral = np.dtype(name).kind in "iu" if _numpy_dtype(name) else False

    def make(values: npt.NDArray[Any]) -> Any:
        numbers = np.asarray(values, dtype=np.float64)
        # An integer column stays one when every value is a whole number (none missing):
        # some boosters record whether a feature was an integer or a float at fit.
        if integral and np.array_equal(numbers, np.floor(numbers)):
            return numbers.astype(name)
        return numbers

    return make


def _categorical(categories: Sequence[Any]) -> Column:
    import pandas as pd

    dtype = pd.CategoricalDtype(categories=list(categories))
    # The service sends every category as a string; the dtype may hold numbers.
    lookup = {str(c): c for c in categories}

    def make(values: npt.NDArray[Any]) -> Any:
        mapped = [None if v is None else lookup.get(v, v) for v in values.tolist()]
        return pd.Categorical(mapped, dtype=dtype)

    return make


def _booleans(name: str) -> Column:
    import pandas as pd

    lookup: dict[Any, Any] = {"True": True, "False": False, None: None}

    def make(values: npt.NDArray[Any]) -> Any:
        mapped = [lookup.get(v, v) for v in values.tolist()]
        if name == "bool" and None not in mapped:
            return np.asarray(mapped, dtype=bool)
        return pd.array(mapped, dtype="boolean")

    return make


def _strings(name: str) -> Column:
    import pandas as pd

    def make(values: npt.NDArray[Any]) -> Any:
        # pandas marks a missing string NaN (read_csv) and imputers look for NaN.
        objects = np.asarray(values, dtype=object)
        missing = np.asarray([v is None for v in objects.tolist()], dtype=bool)
        if missing.any():
            objects = objects.copy()
            objects[missing] = np.nan
        if name == "object":
            return objects
        return pd.array(objects, dtype=name)

    return make


def _numpy_dtype(name: str) -> bool:
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True
